//! Downloads of stored files (here a Recall media part, through the route every stored file
//! shares with exports and frames) with byte ranges, from a folder and from a bucket: the
//! same status codes, Content-Range and bytes from both.

use serde_json::Value;

use crate::after_call::{BOT, noise, start, store_flags, video_part, wait_for_fetch, webhook};
use crate::common::recall_api::RecallStandIn;
use crate::common::recall_api::media::media_webhook;
use crate::common::s3::S3Server;
use crate::common::*;

const SIZE: usize = 40_000;

/// What a client sees of one request: status, Content-Range, Content-Length, body.
#[derive(PartialEq)]
struct Seen {
    status: u16,
    content_range: Option<String>,
    content_length: Option<String>,
    body: Vec<u8>,
}

impl std::fmt::Debug for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seen")
            .field("status", &self.status)
            .field("content_range", &self.content_range)
            .field("content_length", &self.content_length)
            .field("body_len", &self.body.len())
            .field("body_start", &&self.body[..self.body.len().min(8)])
            .finish()
    }
}

/// The answers to the requests a player and a download manager send for `url`.
async fn requests(server: &TestServer, url: &str) -> Vec<(&'static str, &'static str, Seen)> {
    let client = reqwest::Client::new();
    let mut seen = Vec::new();
    for (method, range) in [
        ("GET", ""),
        ("GET", "bytes=100-199"),
        ("GET", "bytes=-50"),
        ("GET", "bytes=1000-"),
        ("GET", "bytes=39990-50000"),
        ("GET", "bytes=40000-"),
        ("GET", "bytes=500-100"),
        ("GET", "bytes=0-9,20-29"),
        ("HEAD", ""),
        ("HEAD", "bytes=100-199"),
    ] {
        let mut request = client.request(method.parse().unwrap(), server.url(url));
        if !range.is_empty() {
            request = request.header("range", range);
        }
        let response = request.send().await.unwrap();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|value| value.to_str().unwrap().to_owned())
        };
        if response.status().is_success() {
            assert_eq!(header("accept-ranges").as_deref(), Some("bytes"));
            assert_eq!(header("content-type").as_deref(), Some("video/mp4"));
        }
        let answer = Seen {
            status: response.status().as_u16(),
            content_range: header("content-range"),
            content_length: header("content-length"),
            body: Vec::new(),
        };
        let body = response.bytes().await.unwrap().to_vec();
        seen.push((method, range, Seen { body, ..answer }));
    }
    seen
}

/// A server (on a bucket when `s3` is given) holding one 40,000-byte Recall video part, and
/// the part's address and bytes.
async fn server_with_a_part(
    recall: &RecallStandIn,
    s3: Option<&S3Server>,
) -> (TestServer, String, Vec<u8>) {
    let video = noise(SIZE, 3);
    recall.add_media(
        RECORDING,
        "video_separate",
        "vs_1",
        true,
        vec![video_part("p_v", 200, "Bob", 4.5, &video)],
    );
    let server = start(recall, &store_flags(s3)).await;
    let base = server.url("");
    let body = media_webhook("video_separate.done", RECORDING, BOT, "vs_1");
    assert_eq!(webhook(&base, "m1", &body).await, 200);
    let media: Value = wait_for_fetch(&base, "video", "done").await;
    let url = media["participants"][0]["parts"][0]["url"]
        .as_str()
        .expect("the part's address")
        .to_owned();
    (server, url, video)
}

#[tokio::test]
async fn ranges_are_answered_alike_from_a_folder_and_from_a_bucket() {
    let s3 = S3Server::start().await;
    let recall = RecallStandIn::start().await;
    let (bucket_server, url, video) = server_with_a_part(&recall, Some(&s3)).await;
    let from_bucket = requests(&bucket_server, &url).await;
    let recall = RecallStandIn::start().await;
    let (folder_server, folder_url, _) = server_with_a_part(&recall, None).await;
    assert_eq!(folder_url, url);
    let from_folder = requests(&folder_server, &url).await;

    let whole = |status: u16| Seen {
        status,
        content_range: None,
        content_length: Some(SIZE.to_string()),
        body: video.clone(),
    };
    let part = |from: usize, to: usize| Seen {
        status: 206,
        content_range: Some(format!("bytes {from}-{to}/{SIZE}")),
        content_length: Some((to - from + 1).to_string()),
        body: video[from..=to].to_vec(),
    };
    let unsatisfiable = || Seen {
        status: 416,
        content_range: Some(format!("bytes */{SIZE}")),
        content_length: Some("0".into()),
        body: Vec::new(),
    };
    let expected = [
        whole(200),
        part(100, 199),
        part(SIZE - 50, SIZE - 1),
        part(1000, SIZE - 1),
        part(39_990, SIZE - 1),
        unsatisfiable(),
        unsatisfiable(),
        whole(200),
        Seen {
            body: Vec::new(),
            ..whole(200)
        },
        Seen {
            body: Vec::new(),
            ..part(100, 199)
        },
    ];
    for (((method, range, bucket), (_, _, folder)), expected) in
        from_bucket.iter().zip(&from_folder).zip(&expected)
    {
        assert_eq!(bucket, expected, "{method} {range:?} from the bucket");
        assert_eq!(folder, expected, "{method} {range:?} from the folder");
    }
}
