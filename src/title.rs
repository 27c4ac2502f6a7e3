//! What a recording is called, for people: a `title` in the recording's or the bot's
//! metadata, else the name of a bot this server created, else the meeting's platform and
//! host, else when it started. Never just its id.
//!
//! A bot this server creates carries what these rules need in its metadata
//! ([`bot_metadata`]), and Recall sends that metadata back with every event, so every
//! server that writes the recording (and every backend) names it alike.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The metadata key of a recording's title, in the recording's or the bot's metadata.
pub const TITLE_KEY: &str = "title";
/// In the metadata of a bot this server created: the name it showed in the meeting.
pub const BOT_NAME_KEY: &str = "bot_name";
/// In the metadata of a bot this server created: the meeting link's host (never the whole
/// link, which can carry a passcode).
pub const MEETING_HOST_KEY: &str = "meeting_host";
/// Read too, for bots created by other tools that keep the whole link in metadata: only its
/// host is ever used.
const MEETING_URL_KEY: &str = "meeting_url";

/// Longest title kept, in characters; longer ones are cut with an ellipsis.
pub const MAX_TITLE_CHARS: usize = 200;

/// Where a title came from: API clients can tell a real title from a made-up one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TitleSource {
    /// `title` in the recording's or the bot's metadata.
    Metadata,
    /// The name of a bot this server created.
    BotName,
    /// The meeting link's platform and host.
    Meeting,
    /// When the first frame was taken.
    StartTime,
    /// Nothing at all is known.
    Untitled,
}

/// A recording's title and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Title {
    pub text: String,
    pub source: TitleSource,
}

impl Title {
    /// The title the recording's context gives it: its metadata, then its bot's. `None`
    /// when neither says anything a title could come from.
    pub fn from_context(recording: &Value, bot: Option<&Value>) -> Option<Title> {
        let sources = [Some(recording), bot];
        let text = |key| sources.iter().flatten().find_map(|m| text_at(m, key));
        if let Some(title) = text(TITLE_KEY) {
            return Some(Title::new(title, TitleSource::Metadata));
        }
        if let Some(name) = bot.and_then(|m| text_at(m, BOT_NAME_KEY)) {
            return Some(Title::new(name, TitleSource::BotName));
        }
        let host = sources.iter().flatten().find_map(|m| {
            text_at(m, MEETING_HOST_KEY)
                .and_then(|host| meeting_host(&format!("https://{host}/")))
                .or_else(|| text_at(m, MEETING_URL_KEY).and_then(|url| meeting_host(&url)))
        })?;
        Some(Title::new(meeting_label(&host), TitleSource::Meeting))
    }

    /// The title of a recording whose context names nothing: when its first frame was taken
    /// (in UTC: the server cannot know the reader's zone), else plainly untitled.
    pub fn fallback(first_frame: Option<Timestamp>) -> Title {
        match first_frame {
            Some(at) => Title {
                text: format!("Recording of {}", at.strftime("%-d %b %Y, %H:%M UTC")),
                source: TitleSource::StartTime,
            },
            None => Title {
                text: "Untitled recording".into(),
                source: TitleSource::Untitled,
            },
        }
    }

    fn new(text: String, source: TitleSource) -> Title {
        Title { text, source }
    }
}

/// The metadata a bot this server creates carries, so that its recordings have a title:
/// the `title` asked for, the bot's name, and the meeting link's host.
pub fn bot_metadata(
    title: Option<&str>,
    bot_name: Option<&str>,
    meeting_url: &str,
) -> Map<String, Value> {
    let mut metadata = Map::new();
    let mut put = |key: &str, value: Option<String>| {
        if let Some(value) = value {
            metadata.insert(key.to_owned(), Value::String(value));
        }
    };
    put(TITLE_KEY, title.map(str::to_owned));
    put(BOT_NAME_KEY, bot_name.map(|name| name.trim().to_owned()));
    put(MEETING_HOST_KEY, meeting_host(meeting_url));
    metadata
}

/// Checks a title someone asks for: `None` when it is blank, else it trimmed and within
/// [`MAX_TITLE_CHARS`].
pub fn check_title(title: &str) -> Option<String> {
    let title = title.trim();
    (!title.is_empty()).then(|| shorten(title))
}

/// A metadata value as title text: a string with something in it, trimmed and shortened.
fn text_at(metadata: &Value, key: &str) -> Option<String> {
    metadata.get(key)?.as_str().and_then(check_title)
}

fn shorten(text: &str) -> String {
    // Line breaks and tabs would break a card's one line.
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match text.char_indices().nth(MAX_TITLE_CHARS) {
        Some((cut, _)) => format!("{}…", text[..cut].trim_end()),
        None => text,
    }
}

/// The host of a meeting link, lower-cased, or `None` when it is not an http(s) link.
fn meeting_host(url: &str) -> Option<String> {
    let url = url::Url::parse(url.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let host = url.host_str()?.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// `us02web.zoom.us` → `Zoom meeting on us02web.zoom.us`; an unknown host → `Meeting on
/// <host>`.
fn meeting_label(host: &str) -> String {
    let on = |domain: &str| host == domain || host.ends_with(&format!(".{domain}"));
    let platform = if on("zoom.us") || on("zoomgov.com") {
        Some("Zoom")
    } else if on("meet.google.com") {
        Some("Google Meet")
    } else if on("teams.microsoft.com") || on("teams.live.com") || on("teams.microsoft.us") {
        Some("Microsoft Teams")
    } else if on("webex.com") {
        Some("Webex")
    } else if on("gotomeeting.com") || on("meet.goto.com") {
        Some("GoTo Meeting")
    } else {
        None
    };
    match platform {
        Some(platform) => format!("{platform} meeting on {host}"),
        None => format!("Meeting on {host}"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn title(recording: Value, bot: Option<Value>) -> Option<(String, TitleSource)> {
        Title::from_context(&recording, bot.as_ref()).map(|t| (t.text, t.source))
    }

    #[test]
    fn a_title_in_metadata_comes_first_the_recordings_before_the_bots() {
        let bot =
            json!({"title": "From the bot", "bot_name": "Recorder", "meeting_host": "zoom.us"});
        assert_eq!(
            title(json!({"title": "  Weekly sync  "}), Some(bot.clone())),
            Some(("Weekly sync".into(), TitleSource::Metadata))
        );
        assert_eq!(
            title(json!({"title": " "}), Some(bot)),
            Some(("From the bot".into(), TitleSource::Metadata))
        );
    }

    #[test]
    fn then_the_bots_name_then_the_meetings_platform_and_host() {
        let bot = |metadata| title(json!({}), Some(metadata));
        assert_eq!(
            bot(json!({"bot_name": "Standup notes", "meeting_host": "meet.google.com"})),
            Some(("Standup notes".into(), TitleSource::BotName))
        );
        assert_eq!(
            bot(json!({"meeting_host": "us02web.zoom.us"})),
            Some((
                "Zoom meeting on us02web.zoom.us".into(),
                TitleSource::Meeting
            ))
        );
        assert_eq!(
            bot(json!({"meeting_url": "https://teams.microsoft.com/l/meetup-join/x?pwd=secret"}))
                .unwrap()
                .0,
            "Microsoft Teams meeting on teams.microsoft.com",
            "only the host of a whole link"
        );
        assert_eq!(
            bot(json!({"meeting_host": "calls.example.org"})).unwrap().0,
            "Meeting on calls.example.org"
        );
        for nothing in [
            json!({}),
            json!({"title": 5, "bot_name": ""}),
            json!({"meeting_host": "not a host/"}),
            json!({"meeting_url": "ftp://zoom.us/x"}),
        ] {
            assert_eq!(bot(nothing.clone()), None, "{nothing}");
        }
        assert_eq!(title(Value::Null, None), None);
    }

    #[test]
    fn without_context_the_first_frames_time_names_it() {
        let at: Timestamp = "2026-12-02T10:04:31Z".parse().unwrap();
        assert_eq!(
            Title::fallback(Some(at)),
            Title {
                text: "Recording of 2 Dec 2026, 10:04 UTC".into(),
                source: TitleSource::StartTime
            }
        );
        assert_eq!(Title::fallback(None).text, "Untitled recording");
    }

    #[test]
    fn titles_are_one_line_and_not_too_long() {
        assert_eq!(check_title("a\nb\tc").as_deref(), Some("a b c"));
        let long = "é".repeat(MAX_TITLE_CHARS + 10);
        let cut = check_title(&long).unwrap();
        assert_eq!(cut.chars().count(), MAX_TITLE_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(check_title("   "), None);
    }

    #[test]
    fn a_created_bot_carries_what_names_its_recordings() {
        let metadata = bot_metadata(
            Some("Design review"),
            Some(" Recorder "),
            "https://us02web.zoom.us/j/123?pwd=secret",
        );
        assert_eq!(
            Value::Object(metadata),
            json!({"title": "Design review", "bot_name": "Recorder", "meeting_host": "us02web.zoom.us"})
        );
        let bare = bot_metadata(None, None, "https://meet.google.com/abc-defg-hij");
        assert_eq!(
            Value::Object(bare.clone()),
            json!({"meeting_host": "meet.google.com"})
        );
        assert_eq!(
            Title::from_context(&json!({}), Some(&Value::Object(bare)))
                .unwrap()
                .text,
            "Google Meet meeting on meet.google.com"
        );
    }
}
