//! A frame's `buffer`: the base64 of its PNG, decoded fast but exactly as strictly as the
//! reference decoder.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Standard base64, with or without the trailing `=` padding.
pub(super) const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes a frame's base64: the largest cost of decoding, so a SIMD decoder does it, about
/// four times faster. Whatever that decoder refuses is decoded again by [`BASE64`], which has
/// the last word and the precise error. The SIMD decoder is as strict (alphabet, padding,
/// trailing bits), so exactly the same buffers are accepted as with [`BASE64`] alone.
pub(super) fn decode_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let simd = if text.len().is_multiple_of(4) {
        base64_simd::STANDARD
    } else {
        base64_simd::STANDARD_NO_PAD
    };
    match simd.decode_to_vec(text) {
        Ok(bytes) => Ok(bytes),
        Err(_) => BASE64.decode(text.as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_base64_decoder_accepts_and_refuses_exactly_what_the_base64_crate_does() {
        use rand::{Rng as _, SeedableRng as _};
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(5);
        let symbols: Vec<char> = ('A'..='Z')
            .chain('a'..='z')
            .chain('0'..='9')
            .chain("+/=-_ \n\u{e9}".chars())
            .collect();
        let mut inputs: Vec<String> = Vec::new();
        for _ in 0..20_000 {
            // Short random strings: every padding and length case.
            let len = (rng.next_u32() % 14) as usize;
            let text: String = (0..len)
                .map(|_| symbols[rng.next_u32() as usize % symbols.len()])
                .collect();
            inputs.push(text);
        }
        for len in 0..200 {
            // Valid encodings long enough for the SIMD loops, padded or not, then the same
            // with one character changed (often into an invalid one or bad trailing bits).
            let bytes: Vec<u8> = (0..len).map(|_| rng.next_u32() as u8).collect();
            let padded = BASE64.encode(&bytes);
            let unpadded = padded.trim_end_matches('=').to_string();
            for valid in [padded, unpadded] {
                inputs.push(valid.clone());
                if !valid.is_empty() {
                    let mut chars: Vec<char> = valid.chars().collect();
                    let at = rng.next_u32() as usize % chars.len();
                    chars[at] = symbols[rng.next_u32() as usize % symbols.len()];
                    inputs.push(chars.into_iter().collect());
                }
            }
        }
        for text in &inputs {
            let fast = decode_base64(text);
            let reference = BASE64.decode(text.as_bytes());
            assert_eq!(fast, reference, "{text:?}");
        }
    }
}
