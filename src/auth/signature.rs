//! Recall's signed websocket upgrades. A workspace with a verification secret (`whsec_...`)
//! signs each upgrade request the way Svix signs webhooks: `webhook-id`, `webhook-timestamp`
//! and `webhook-signature` headers (`svix-*` in older workspaces), where the signature header
//! is a space-separated list of `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.">` entries,
//! keyed with the base64-decoded part of the secret after `whsec_`.

use std::fmt;

use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit as _, Mac as _};
use jiff::Timestamp;
use sha2::Sha256;

/// How far a signature's timestamp may be from now, either way (Svix's tolerance).
pub const TOLERANCE_SECONDS: i64 = 5 * 60;

/// Signature entries looked at, at most: Recall sends one per active secret (two while a
/// secret is rotated), so more is noise, and each costs an HMAC.
const MAX_ENTRIES: usize = 16;

/// The two header families Recall uses; `webhook-*` is current, `svix-*` older.
pub const WEBHOOK_HEADERS: HeaderNames = HeaderNames {
    id: "webhook-id",
    timestamp: "webhook-timestamp",
    signature: "webhook-signature",
};
pub const SVIX_HEADERS: HeaderNames = HeaderNames {
    id: "svix-id",
    timestamp: "svix-timestamp",
    signature: "svix-signature",
};

#[derive(Debug, Clone, Copy)]
pub struct HeaderNames {
    pub id: &'static str,
    pub timestamp: &'static str,
    pub signature: &'static str,
}

/// A `whsec_` verification secret, ready to sign and verify. Never printed by `Debug`.
#[derive(Clone)]
pub struct SigningSecret {
    mac: Hmac<Sha256>,
}

impl SigningSecret {
    const PREFIX: &'static str = "whsec_";

    /// Parses the secret as Recall's dashboard shows it: `whsec_` then base64.
    pub fn parse(text: &str) -> Result<Self, String> {
        let encoded = text.trim().strip_prefix(Self::PREFIX).ok_or_else(|| {
            format!(
                "must start with {} (copy it from Recall's dashboard)",
                Self::PREFIX
            )
        })?;
        let key = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        )
        .decode(encoded)
        .map_err(|_| format!("the part after {} must be base64", Self::PREFIX))?;
        if key.len() < 16 {
            return Err(format!(
                "the key after {} is {} bytes; Recall's are 24 or more",
                Self::PREFIX,
                key.len()
            ));
        }
        let mac = Hmac::<Sha256>::new_from_slice(&key)
            .map_err(|_| "HMAC-SHA256 refused the key".to_string())?;
        Ok(SigningSecret { mac })
    }

    fn mac_over(&self, id: &str, timestamp: &str, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        for part in [id.as_bytes(), b".", timestamp.as_bytes(), b".", payload] {
            mac.update(part);
        }
        mac
    }

    /// Checks the signature headers of an upgrade request against this secret, at `now`.
    pub fn verify(&self, headers: &HeaderMap, now: Timestamp) -> Result<(), SignatureError> {
        self.check(headers, now, b"", "upgrade").map(|_| ())
    }

    /// Checks the signature headers of a webhook over its body `payload`, at `now`, and
    /// returns the message id (`webhook-id`), which Svix keeps across retries of one
    /// delivery.
    pub fn verify_payload<'h>(
        &self,
        headers: &'h HeaderMap,
        now: Timestamp,
        payload: &[u8],
    ) -> Result<&'h str, SignatureError> {
        self.check(headers, now, payload, "webhook")
    }

    /// Checks the signature of `what` (an upgrade or a webhook), which the errors name.
    fn check<'h>(
        &self,
        headers: &'h HeaderMap,
        now: Timestamp,
        payload: &[u8],
        what: &'static str,
    ) -> Result<&'h str, SignatureError> {
        let names = if headers.contains_key(WEBHOOK_HEADERS.id) {
            WEBHOOK_HEADERS
        } else if headers.contains_key(SVIX_HEADERS.id) {
            SVIX_HEADERS
        } else {
            return Err(SignatureError::Missing(what));
        };
        let text = |name: &'static str| -> Result<&str, SignatureError> {
            headers
                .get(name)
                .ok_or(SignatureError::MissingHeader(name))?
                .to_str()
                .map_err(|_| SignatureError::Malformed(name))
        };
        let (id, timestamp, signatures) = (
            text(names.id)?,
            text(names.timestamp)?,
            text(names.signature)?,
        );
        let seconds: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| SignatureError::Malformed(names.timestamp))?;
        let age = now.as_second().saturating_sub(seconds);
        if age > TOLERANCE_SECONDS {
            return Err(SignatureError::Stale { seconds: age });
        }
        if age < -TOLERANCE_SECONDS {
            return Err(SignatureError::Future {
                seconds: age.saturating_neg(),
            });
        }
        let expected = self.mac_over(id, timestamp, payload);
        let matched = signatures
            .split_ascii_whitespace()
            .take(MAX_ENTRIES)
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .filter_map(|tag| STANDARD.decode(tag).ok())
            // verify_slice compares in constant time.
            .any(|tag| expected.clone().verify_slice(&tag).is_ok());
        if matched {
            Ok(id)
        } else {
            Err(SignatureError::NoMatch)
        }
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(<redacted>)")
    }
}

/// The signature header value Recall would send for an upgrade with this id and timestamp
/// (unix seconds): `v1,<base64>`. What tests and the simulator sign with.
pub fn sign(secret: &SigningSecret, id: &str, timestamp: i64) -> String {
    sign_payload(secret, id, &timestamp.to_string(), b"")
}

/// The signature header value Recall's webhooks carry for this id, timestamp and body.
pub fn sign_payload(secret: &SigningSecret, id: &str, timestamp: &str, payload: &[u8]) -> String {
    let tag = secret
        .mac_over(id, timestamp, payload)
        .finalize()
        .into_bytes();
    format!("v1,{}", STANDARD.encode(tag))
}

/// Why an upgrade's or a webhook's signature was refused. The messages name headers, never their values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// What was not signed: an `upgrade` or a `webhook`.
    #[error("no webhook-id/svix-id header: the {0} is not signed")]
    Missing(&'static str),
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    #[error("the {0} header is malformed")]
    Malformed(&'static str),
    #[error("the signature is {seconds} s old; at most {TOLERANCE_SECONDS} s is accepted")]
    Stale { seconds: i64 },
    #[error(
        "the signature is {seconds} s in the future; at most {TOLERANCE_SECONDS} s is accepted"
    )]
    Future { seconds: i64 },
    #[error("no v1 signature matches the secret")]
    NoMatch,
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn secret() -> SigningSecret {
        SigningSecret::parse(SECRET).unwrap()
    }

    fn headers(names: HeaderNames, id: &str, timestamp: i64, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(names.id, HeaderValue::from_str(id).unwrap());
        headers.insert(names.timestamp, HeaderValue::from(timestamp));
        headers.insert(names.signature, HeaderValue::from_str(signature).unwrap());
        headers
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    #[test]
    fn webhooks_are_verified_over_their_body_and_give_their_id() {
        let body = br#"{"event":"bot.done"}"#;
        let signature = sign_payload(&secret(), "msg_1", "1700000000", body);
        let headers = headers(WEBHOOK_HEADERS, "msg_1", 1_700_000_000, &signature);
        assert_eq!(
            secret().verify_payload(&headers, at(1_700_000_010), body),
            Ok("msg_1")
        );
        assert_eq!(
            secret().verify_payload(&headers, at(1_700_000_010), br#"{"event":"bot.fatal"}"#),
            Err(SignatureError::NoMatch)
        );
        // An upgrade's signature (empty payload) is no webhook's.
        assert_eq!(
            secret().verify(&headers, at(1_700_000_010)),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn signs_like_svix() {
        // Svix's published example: this secret, id, timestamp and payload give this tag.
        assert_eq!(
            sign_payload(
                &secret(),
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "1614265330",
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        // An upgrade has an empty payload (computed independently with Python's hmac).
        assert_eq!(
            sign(&secret(), "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330),
            "v1,v48jdbgvh29KJz2Qc+ghw8G6vG3nAKnujWBg8oM/62A="
        );
    }

    #[test]
    fn secrets_are_parsed_with_clear_errors() {
        assert!(SigningSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(SigningSecret::parse("whsec_not*base64").is_err());
        assert!(SigningSecret::parse("whsec_c2hvcnQ=").is_err());
        // Without padding, and with a stray newline from a pasted value.
        assert!(SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").is_ok());
        assert_eq!(format!("{:?}", secret()), "SigningSecret(<redacted>)");
    }

    #[test]
    fn verifies_good_refuses_forged_stale_future_and_tampered() {
        let now = 1_800_000_000;
        let good = sign(&secret(), "msg_1", now);
        let check = |headers: &HeaderMap| secret().verify(headers, at(now));
        assert_eq!(
            check(&headers(WEBHOOK_HEADERS, "msg_1", now, &good)),
            Ok(())
        );
        assert_eq!(check(&headers(SVIX_HEADERS, "msg_1", now, &good)), Ok(()));
        // Several entries, as during a secret rotation, with other versions mixed in.
        let several = format!("v1,AAAA v1a,{} {good}", &good[3..]);
        assert_eq!(
            check(&headers(WEBHOOK_HEADERS, "msg_1", now, &several)),
            Ok(())
        );

        let other = SigningSecret::parse("whsec_dGhpcyBpcyBhbm90aGVyIHNlY3JldCBrZXk=").unwrap();
        let forged = sign(&other, "msg_1", now);
        assert_eq!(
            check(&headers(WEBHOOK_HEADERS, "msg_1", now, &forged)),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            check(&headers(WEBHOOK_HEADERS, "msg_2", now, &good)),
            Err(SignatureError::NoMatch),
            "a tampered id"
        );
        assert_eq!(
            check(&headers(WEBHOOK_HEADERS, "msg_1", now + 1, &good)),
            Err(SignatureError::NoMatch),
            "a tampered timestamp"
        );
        assert_eq!(
            check(&headers(
                WEBHOOK_HEADERS,
                "msg_1",
                now,
                good.trim_start_matches("v1,")
            )),
            Err(SignatureError::NoMatch),
            "no version prefix"
        );

        let stale = now - TOLERANCE_SECONDS - 1;
        let signed = sign(&secret(), "msg_1", stale);
        assert_eq!(
            check(&headers(WEBHOOK_HEADERS, "msg_1", stale, &signed)),
            Err(SignatureError::Stale { seconds: 301 })
        );
        let future = now + TOLERANCE_SECONDS + 1;
        let signed = sign(&secret(), "msg_1", future);
        assert_eq!(
            check(&headers(WEBHOOK_HEADERS, "msg_1", future, &signed)),
            Err(SignatureError::Future { seconds: 301 })
        );
        let edge = now - TOLERANCE_SECONDS;
        let signed = sign(&secret(), "msg_1", edge);
        assert_eq!(
            check(&headers(WEBHOOK_HEADERS, "msg_1", edge, &signed)),
            Ok(())
        );
    }

    #[test]
    fn missing_and_malformed_headers_are_named() {
        let now = 1_800_000_000;
        let check = |headers: &HeaderMap| secret().verify(headers, at(now));
        assert_eq!(
            check(&HeaderMap::new()),
            Err(SignatureError::Missing("upgrade"))
        );
        assert_eq!(
            secret()
                .verify_payload(&HeaderMap::new(), at(now), b"{}")
                .map(|_| ()),
            Err(SignatureError::Missing("webhook"))
        );
        let mut partial = headers(WEBHOOK_HEADERS, "msg_1", now, "v1,AAAA");
        partial.remove("webhook-signature");
        assert_eq!(
            check(&partial),
            Err(SignatureError::MissingHeader("webhook-signature"))
        );
        let mut bad_time = headers(WEBHOOK_HEADERS, "msg_1", now, "v1,AAAA");
        bad_time.insert("webhook-timestamp", HeaderValue::from_static("soon"));
        assert_eq!(
            check(&bad_time),
            Err(SignatureError::Malformed("webhook-timestamp"))
        );
        let mut huge = headers(WEBHOOK_HEADERS, "msg_1", now, "v1,AAAA");
        huge.insert(
            "webhook-timestamp",
            HeaderValue::from_static("-9223372036854775808"),
        );
        assert!(matches!(
            check(&huge),
            Err(SignatureError::Stale { .. } | SignatureError::Future { .. })
        ));
    }
}
