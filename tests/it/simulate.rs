//! `recall-frames simulate` against the real server: what it sends lands on disk as sent,
//! it resumes after a server restart, and its exit code tells a user when something is wrong.

use std::path::Path;
use std::time::Duration;

use crate::common::*;
use recall_frames::frame::StreamKind;
use recall_frames::layout;
use recall_frames::simulate::{Output, Report, SimulateArgs, Simulation};
use tokio_util::sync::CancellationToken;

/// Small frames keep the debug-build tests quick; the size itself is a unit test's concern.
const SMALL: &str = "160x90";

async fn simulate(url: &str, args: &[&str]) -> (Simulation, Report) {
    let mut all = vec![url];
    all.extend(args);
    let simulation = Simulation::prepare(SimulateArgs::from_args(all).expect("valid arguments"))
        .await
        .expect("the simulation is prepared");
    let report = simulation
        .run(Output::Quiet, CancellationToken::new())
        .await
        .expect("the simulation runs to the end");
    (simulation, report)
}

/// Every frame the report says was sent is a file holding exactly the PNG sent, listed once
/// in its manifest, and there is nothing else.
fn assert_on_disk_as_sent(data_dir: &Path, simulation: &Simulation, report: &Report) {
    for stream in &report.streams {
        let dir = stream.dir_in(data_dir);
        let mut expected: Vec<String> = stream
            .sent_ms
            .iter()
            .map(|&ms| layout::frame_file_name(ms))
            .collect();
        let manifest = listed_files(&dir);
        assert_eq!(
            manifest,
            expected,
            "{} lists each frame once",
            dir.display()
        );
        for (tick, name) in expected.iter().enumerate() {
            let saved = std::fs::read(dir.join(name)).unwrap();
            assert!(
                saved == simulation.png(stream.slot, stream.kind, tick as u64),
                "{}/{name} is the PNG sent",
                dir.display()
            );
        }
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name != "frames.jsonl")
            .collect();
        files.sort();
        expected.sort();
        assert_eq!(
            files,
            expected,
            "{} holds the frames sent only",
            dir.display()
        );
    }
}

#[tokio::test]
async fn bots_participants_and_screenshares_land_on_disk_as_sent() {
    let mut server = TestServer::start().await;
    let (simulation, report) = simulate(
        &server.ws_url(WS_TOKEN),
        &[
            "--bots",
            "2",
            "--participants",
            "3",
            "--names",
            "Ann Lee,Bo Chen",
            "--hosts",
            "1",
            "--screenshare",
            "1",
            "--frames",
            "4",
            "--fps",
            "40",
            "--size",
            SMALL,
            "--recording",
            "sim_test",
            "--participant-events",
        ],
    )
    .await;
    server.stop().await.unwrap();

    assert_eq!(report.refused(), 0, "{report}");
    assert_eq!((report.bots, report.streams.len()), (2, 8));
    assert_eq!(
        (
            report.frames,
            report.webcam_frames,
            report.screenshare_frames
        ),
        (32, 24, 8)
    );
    // join and webcam_on for each, screenshare_on for one, leave for each: per bot.
    assert_eq!(report.participant_events, 2 * (3 + 3 + 1 + 3));
    assert_on_disk_as_sent(&server.data_dir, &simulation, &report);

    let mut expected = vec![];
    for recording in ["sim_test-1", "sim_test-2"] {
        for stream in [
            "100-ann-lee/participant.json",
            "100-ann-lee/screenshare",
            "100-ann-lee/webcam",
            "101-bo-chen/participant.json",
            "101-bo-chen/webcam",
            "102-carol-diaz/participant.json",
            "102-carol-diaz/webcam",
            "events.jsonl",
            "recording.json",
        ] {
            expected.push(format!("{recording}/{stream}"));
        }
    }
    let mut found: Vec<String> = tree(&server.data_dir)
        .into_iter()
        .map(|path| match path.rsplit_once('/') {
            Some((dir, file)) if file.ends_with(".png") || file == "frames.jsonl" => dir.into(),
            _ => path,
        })
        .collect();
    found.dedup();
    assert_eq!(found, expected);

    // The server records the participant events each bot sent, in order.
    let events: Vec<(String, u64)> = read_jsonl(&server.data_dir.join("sim_test-1/events.jsonl"))
        .iter()
        .map(|line| {
            let kind = line["event"]
                .as_str()
                .unwrap()
                .trim_start_matches("participant_events.");
            (kind.to_owned(), line["participant"]["id"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(events.len(), 3 + 3 + 1 + 3);
    for id in [100, 101, 102] {
        let mine: Vec<&str> = events
            .iter()
            .filter(|(_, who)| *who == id)
            .map(|(kind, _)| kind.as_str())
            .collect();
        let shares = if id == 100 {
            vec!["screenshare_on"]
        } else {
            vec![]
        };
        let expected: Vec<&str> = ["join", "webcam_on"]
            .into_iter()
            .chain(shares)
            .chain(["leave"])
            .collect();
        assert_eq!(mine, expected, "participant {id}");
    }

    let ann = read_json(
        &server
            .data_dir
            .join("sim_test-2/100-ann-lee/participant.json"),
    );
    assert_eq!(ann["name"], "Ann Lee");
    assert_eq!(ann["is_host"], true);
    let bo = read_json(
        &server
            .data_dir
            .join("sim_test-2/101-bo-chen/participant.json"),
    );
    assert_eq!(bo["is_host"], false);
    let recording = read_json(&server.data_dir.join("sim_test-1/recording.json"));
    assert_eq!(recording["recording"]["id"], "sim_test-1");
    assert_eq!(recording["first_frame"]["relative"], 0.0);
    assert_eq!(
        recording["last_frame"]["relative"], 0.075,
        "4 frames at 40 fps"
    );
    // Each simulated meeting has a title of its own, as a bot created with one does.
    assert_eq!(recording["title"]["source"], "metadata");
    let second = read_json(&server.data_dir.join("sim_test-2/recording.json"));
    assert_eq!(second["title"]["source"], "metadata");
    let titles = [&recording["title"]["text"], &second["title"]["text"]];
    assert!(
        titles
            .iter()
            .all(|t| t.as_str().is_some_and(|t| !t.is_empty()))
    );
    assert_ne!(titles[0], titles[1]);
}

/// Single-bot runs without `--title` are told apart in the list by their made-up titles.
#[tokio::test]
async fn successive_runs_get_different_made_up_titles() {
    let server = TestServer::start().await;
    let runs = ["sim-b", "sim-c", "sim-d"];
    for recording in runs {
        let args = ["--frames", "1", "--size", SMALL, "--recording", recording];
        simulate(&server.ws_url(WS_TOKEN), &args).await;
    }
    let list = server.get_json("/api/recordings").await;
    let mut titles: Vec<&str> = list["recordings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["title"]
                .as_str()
                .unwrap_or_else(|| panic!("untitled: {r}"))
        })
        .collect();
    assert_eq!(titles.len(), runs.len(), "{list}");
    titles.sort_unstable();
    titles.dedup();
    assert_eq!(titles.len(), runs.len(), "three different titles: {list}");
}

#[tokio::test]
async fn a_server_restart_mid_run_is_survived_without_overwriting() {
    let data = tempfile::tempdir().unwrap();
    let mut server = TestServer::start_in(data.path(), &[]).await;
    let addr = server.addr;
    let url = server.ws_url(WS_TOKEN);
    let run = tokio::spawn(async move {
        simulate(
            &url,
            &[
                "--participants",
                "2",
                "--screenshare",
                "1",
                "--frames",
                "30",
                "--fps",
                "20",
                "--size",
                SMALL,
                "--recording",
                "restarted",
                "--retry-delay",
                "100ms",
                "--retries",
                "100",
            ],
        )
        .await
    });
    let first_webcam = data.path().join("restarted/100-alice-smith/webcam");
    eventually("the first frames are saved", || async {
        std::fs::read_dir(&first_webcam).map_or(0, |d| d.count()) > 6
    })
    .await;
    server.stop().await.expect("a clean shutdown mid-run");
    tokio::time::sleep(Duration::from_millis(300)).await; // a few failed attempts
    let mut server = TestServer::restart_at(addr, data.path(), &[]).await;
    let (simulation, report) = tokio::time::timeout(PATIENCE, run)
        .await
        .expect("the simulation ends")
        .unwrap();
    server.stop().await.unwrap();

    assert!(report.reconnects >= 1, "{report}");
    assert_eq!(report.refused(), 0, "{report}");
    assert_eq!(report.frames, 3 * 30, "{report}");
    assert_on_disk_as_sent(data.path(), &simulation, &report);
}

#[tokio::test]
async fn frames_from_a_folder_are_sent_byte_for_byte() {
    let mut server = TestServer::start().await;
    let folder = tempfile::tempdir().unwrap();
    let pngs: Vec<Vec<u8>> = (0..3).map(|i| png(96, 54, 1000 + i)).collect();
    for (i, bytes) in pngs.iter().enumerate() {
        std::fs::write(folder.path().join(format!("shot-{i}.png")), bytes).unwrap();
    }
    std::fs::write(folder.path().join("notes.txt"), "not a frame").unwrap();
    let dir = folder.path().display().to_string();
    let (simulation, report) = simulate(
        &server.ws_url(WS_TOKEN),
        &[
            "--pngs",
            &dir,
            "--participants",
            "1",
            "--screenshare",
            "0",
            "--frames",
            "5",
            "--fps",
            "50",
            "--recording",
            "from_folder",
        ],
    )
    .await;
    server.stop().await.unwrap();
    assert_on_disk_as_sent(&server.data_dir, &simulation, &report);
    let webcam = server.data_dir.join("from_folder/100-alice-smith/webcam");
    for (tick, ms) in report.streams[0].sent_ms.iter().enumerate() {
        let saved = std::fs::read(webcam.join(layout::frame_file_name(*ms))).unwrap();
        assert!(
            saved == pngs[tick % 3],
            "frame {tick} is file {} of the folder",
            tick % 3
        );
    }
    assert_eq!(report.streams[0].kind, StreamKind::Webcam);

    std::fs::write(
        folder.path().join("shot-9.png"),
        b"\x89PNG\r\n\x1a\n truncated",
    )
    .unwrap();
    let refused = Simulation::prepare(
        SimulateArgs::from_args(["ws://127.0.0.1:9/ws", "--pngs", &dir]).unwrap(),
    )
    .await
    .err()
    .expect("a broken PNG is refused before anything is sent");
    assert!(refused.to_string().contains("shot-9.png"), "{refused}");
}

/// Runs the real binary's `simulate` (with no token or secret from the environment) to
/// its end.
async fn run_simulate(args: &[&str]) -> std::process::Output {
    let args: Vec<&str> = ["simulate"].iter().chain(args).copied().collect();
    recall_frames(&[], &args).await
}

/// Runs the real binary's `simulate` and returns its exit code and stderr.
async fn simulate_command(args: &[&str]) -> (Option<i32>, String) {
    let output = run_simulate(args).await;
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_wrong_token_exits_non_zero_at_once_with_the_reason() {
    let server = TestServer::start().await;
    let (code, stderr) = simulate_command(&[
        &server.ws_url("wrong-token-0123456789"),
        "--frames",
        "1",
        "--size",
        SMALL,
    ])
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("refused the websocket upgrade: HTTP 401"),
        "{stderr}"
    );
    assert!(stderr.contains("token is missing or wrong"), "{stderr}");
}

#[tokio::test]
async fn upgrades_are_signed_for_a_server_that_requires_recall_signatures() {
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let mut server = TestServer::start_with(&["--recall-verification-secret", SECRET]).await;
    let url = server.ws_url(WS_TOKEN);
    let (code, stderr) = simulate_command(&[&url, "--frames", "1", "--size", SMALL]).await;
    assert_eq!(code, Some(1), "unsigned: {stderr}");
    assert!(stderr.contains("HTTP 401"), "{stderr}");
    assert!(stderr.contains("signature"), "{stderr}");

    let signed = [
        "--verification-secret",
        SECRET,
        "--frames",
        "3",
        "--fps",
        "50",
    ];
    let (simulation, report) = simulate(&url, &[&signed[..], &["--size", SMALL]].concat()).await;
    server.stop().await.unwrap();
    assert_eq!(report.refused(), 0, "{report}");
    assert_eq!(
        report.frames, 9,
        "two webcams and a screenshare, 3 frames each"
    );
    assert_on_disk_as_sent(&server.data_dir, &simulation, &report);
}

#[tokio::test]
async fn a_close_for_a_message_too_big_exits_non_zero() {
    let server = TestServer::start_with(&["--max-message-bytes", "65536"]).await;
    let (code, stderr) = simulate_command(&[
        &server.ws_url(WS_TOKEN),
        "--frames",
        "2",
        "--fps",
        "50",
        "--participants",
        "1",
        "--retry-delay",
        "50ms",
    ])
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("code 1009"), "{stderr}");
    assert!(stderr.contains("65536"), "{stderr}");
}

#[tokio::test]
async fn a_clean_run_of_the_binary_exits_zero_with_a_summary() {
    let mut server = TestServer::start().await;
    let output = run_simulate(&[
        &server.ws_url(WS_TOKEN),
        "--frames",
        "3",
        "--fps",
        "50",
        "--size",
        SMALL,
        "--recording",
        "cli_run",
    ])
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("sent 9 frames (6 webcam, 3 screenshare)"),
        "{stdout}"
    );
    assert!(stdout.contains("refused by the server: none"), "{stdout}");
    // The summary says where the frames went and which page shows them.
    let page = server.url("/recordings/cli_run");
    assert!(
        stdout.contains(&format!("recording cli_run: open {page}")),
        "{stdout}"
    );
    assert_eq!(server.get("/recordings/cli_run").await.status(), 200);
    server.stop().await.unwrap();
    let pngs = tree(&server.data_dir)
        .iter()
        .filter(|p| p.starts_with("cli_run/") && p.ends_with(".png"))
        .count();
    assert_eq!(pngs, 9);
}

#[tokio::test]
async fn with_no_token_given_the_servers_stored_token_is_used() {
    let mut server = TestServer::start_with(&["--generated-token"]).await;
    let data_dir = server.data_dir.to_str().unwrap().to_owned();
    let output = run_simulate(&[
        &format!("ws://{}/ws", server.addr),
        "--data-dir",
        &data_dir,
        "--frames",
        "1",
        "--size",
        SMALL,
        "--recording",
        "stored_token",
    ])
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let stored = server.data_dir.join(".ws-token");
    assert!(
        stderr.contains(&format!(
            "token: the server's, read from {}",
            stored.display()
        )),
        "{stderr}"
    );
    server.stop().await.unwrap();
    assert!(server.data_dir.join("stored_token").is_dir());
}

#[tokio::test]
async fn with_no_token_anywhere_a_refusal_says_where_one_would_be() {
    let server = TestServer::start().await;
    let empty = tempfile::tempdir().unwrap();
    let (code, stderr) = simulate_command(&[
        &format!("ws://{}/ws", server.addr),
        "--data-dir",
        empty.path().to_str().unwrap(),
        "--frames",
        "1",
        "--size",
        SMALL,
    ])
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("token: none"), "{stderr}");
    assert!(stderr.contains("HTTP 401"), "{stderr}");
    let looked = empty.path().join(".ws-token");
    assert!(
        stderr.contains(&format!("there is no {}", looked.display())),
        "{stderr}"
    );
    assert!(stderr.contains("--token"), "{stderr}");
    assert!(
        !empty.path().join(".ws-token").exists(),
        "none is generated"
    );
}

#[tokio::test]
async fn the_servers_http_address_is_taken_as_its_websocket() {
    let mut server = TestServer::start().await;
    let (code, stderr) = simulate_command(&[
        &server.url("/"),
        "--token",
        WS_TOKEN,
        "--frames",
        "1",
        "--size",
        SMALL,
        "--recording",
        "from_http",
    ])
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    server.stop().await.unwrap();
    assert!(server.data_dir.join("from_http").is_dir());
}

#[tokio::test]
async fn a_refused_upgrade_shows_the_status_and_a_line_not_a_page() {
    let server = TestServer::start().await;
    // A recording, so that its browse page is a whole HTML page.
    simulate(
        &server.ws_url(WS_TOKEN),
        &["--frames", "1", "--size", SMALL, "--recording", "paged"],
    )
    .await;
    let page = server.get("/recordings/paged").await.text().await.unwrap();
    assert!(
        page.lines().count() > 3,
        "the server answers a page: {page}"
    );
    let url = format!("ws://{}/recordings/paged?token={WS_TOKEN}", server.addr);
    let (code, stderr) = simulate_command(&[&url, "--frames", "1", "--size", SMALL]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("refused the websocket upgrade: HTTP "),
        "{stderr}"
    );
    let error = stderr.lines().find(|l| l.starts_with("error:")).unwrap();
    assert!(error.len() < 300, "{stderr}");
    assert!(!stderr.contains("</html>"), "{stderr}");
}

#[tokio::test]
async fn with_audio_each_participant_is_heard_in_their_turn_on_the_timeline_and_its_speech_events()
{
    use recall_frames::simulate::voice;
    let server = TestServer::start().await;
    let (_, report) = simulate(
        &server.ws_url(WS_TOKEN),
        &[
            "--participants",
            "2",
            "--screenshare",
            "0",
            "--frames",
            "20",
            "--fps",
            "max",
            "--size",
            SMALL,
            "--recording",
            "sim_audio",
            "--audio",
            "--audio-chunk-ms",
            "40",
            "--participant-events",
        ],
    )
    .await;
    assert_eq!(report.refused(), 0, "{report}");
    let recording = &report.recordings[0].id;
    // The turns are told as speech events: who stops and who starts, at the turn's time,
    // and the last speaker stops when the frames end (10 s).
    let events = server
        .get_json(&format!("/api/recordings/{recording}"))
        .await["events"]
        .clone();
    let speech: Vec<(String, u64, f64)> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"].as_str().unwrap().contains("speech"))
        .map(|e| {
            (
                e["event"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("participant_events.")
                    .to_owned(),
                e["participant"]["id"].as_u64().unwrap(),
                e["timestamp"]["relative"].as_f64().unwrap(),
            )
        })
        .collect();
    let told = |event: &str, id, at| (event.to_owned(), id, at);
    assert_eq!(
        speech,
        [
            told("speech_on", 100, 0.0),
            told("speech_off", 100, 4.0),
            told("speech_on", 101, 4.0),
            told("speech_off", 101, 8.0),
            told("speech_on", 100, 8.0),
            told("speech_off", 100, 10.0),
        ]
    );
    // Audio is written behind (up to 0.2 s): every chunk sent is listed first.
    for audio in &report.audio {
        let api = format!("/api/recordings/{recording}/{}/audio", audio.participant.0);
        wait_for_chunks(&server, &api, audio.chunks.len() as u64).await;
    }
    // 20 rounds at 2 fps: 10 s. Turns of 4 s: the first speaks 0-4 s and 8-10 s, the second
    // 4-8 s; nothing is sent while quiet.
    for (member, id) in [(0usize, 100u64), (1, 101)] {
        let api = format!("/api/recordings/{recording}/{id}/audio");
        let listing = server.get_json(&api).await;
        let segments: Vec<(u64, u64)> = listing["segments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["start"].as_f64().unwrap() as u64,
                    s["end"].as_f64().unwrap() as u64,
                )
            })
            .collect();
        let expected_segments: &[(u64, u64)] = if member == 0 {
            &[(0, 4), (8, 10)]
        } else {
            &[(4, 8)]
        };
        assert_eq!(segments, expected_segments, "participant {id}");
        let samples = track_wav(&server, &api).await;
        let end = expected_segments.last().unwrap().1 * 16_000;
        let expected: Vec<i16> = (0..end)
            .map(|i| {
                if voice::is_speaking(member, 2, i / 16) {
                    voice::voice(member, i, 1)[0]
                } else {
                    0
                }
            })
            .collect();
        assert!(
            samples == expected,
            "participant {id}'s voice, in their turns only"
        );
    }
}

#[tokio::test]
async fn with_audio_all_every_participant_is_heard_all_the_time_and_reported() {
    use recall_frames::simulate::voice;
    assert!(
        recall_frames::simulate::SimulateArgs::from_args(["--audio-all"]).is_err(),
        "--audio-all without --audio"
    );
    let server = TestServer::start().await;
    let (_, report) = simulate(
        &server.ws_url(WS_TOKEN),
        &[
            "--participants",
            "3",
            "--screenshare",
            "0",
            "--frames",
            "10",
            "--fps",
            "max",
            "--size",
            SMALL,
            "--recording",
            "sim_audio_all",
            "--audio",
            "--audio-all",
        ],
    )
    .await;
    assert_eq!(report.refused(), 0, "{report}");
    // 10 rounds at 2 fps: 5 s of each voice, in 20 ms chunks back to back.
    let samples = 5 * 16_000;
    assert_eq!(report.audio.len(), 3);
    assert_eq!(report.audio_samples, 3 * samples);
    assert_eq!(report.audio_chunks, 3 * 250);
    for audio in &report.audio {
        let starts: Vec<u64> = audio.chunks.iter().map(|&(start, _)| start).collect();
        assert_eq!(starts, (0..250).map(|i| i * 320).collect::<Vec<_>>());
        let api = format!(
            "/api/recordings/sim_audio_all/{}/audio",
            audio.participant.0
        );
        // Written behind (up to 0.2 s): every chunk sent is listed first.
        wait_for_chunks(&server, &api, 250).await;
        let listing = server.get_json(&api).await;
        assert_eq!(
            listing["segments"].as_array().unwrap().len(),
            1,
            "{listing}"
        );
        let saved = track_wav(&server, &api).await;
        assert!(
            saved == voice::voice(audio.slot, 0, samples as usize),
            "participant {}'s voice throughout",
            audio.participant.0
        );
        // The folder the report names is where the server put the track.
        assert!(audio.dir_in(&server.data_dir).join("audio.jsonl").is_file());
    }
}

/// Without a URL, the simulator streams to this machine's server on --port (or PORT), not
/// always 8080.
#[tokio::test]
async fn with_no_url_the_port_setting_names_the_server() {
    let mut server = TestServer::start().await;
    let port = server.addr.port().to_string();
    let args = ["--token", WS_TOKEN, "--frames", "1", "--size", SMALL];
    let by_flag = recall_frames(
        &[],
        &[
            &["simulate", "--port", &port, "--recording", "by_flag"],
            &args[..],
        ]
        .concat(),
    )
    .await;
    let stderr = String::from_utf8_lossy(&by_flag.stderr);
    assert_eq!(by_flag.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("ws://localhost:{port}/ws")),
        "{stderr}"
    );
    let by_env = recall_frames(
        &[("PORT", &port)],
        &[&["simulate", "--recording", "by_env"], &args[..]].concat(),
    )
    .await;
    let stderr = String::from_utf8_lossy(&by_env.stderr);
    assert_eq!(by_env.status.code(), Some(0), "{stderr}");
    server.stop().await.unwrap();
    assert!(server.data_dir.join("by_flag").is_dir());
    assert!(server.data_dir.join("by_env").is_dir());
}
