//! The `recall-frames` command as a newcomer meets it: what the README says it prints, and
//! how it reports a user's mistake.

use crate::common::*;

/// The start-up line the README shows is the one the server prints, token and all.
#[tokio::test]
async fn the_readme_shows_the_start_up_line_the_server_prints() {
    let data = tempfile::tempdir().unwrap();
    let mut server = BinaryServer::spawn(data.path(), &[], &[]);
    let port = server.addr.port();
    assert!(server.terminate());
    let output = server.output();
    let printed = output
        .lines()
        .find(|line| line.contains("bots connect to"))
        .unwrap_or_else(|| panic!("no websocket URL in:\n{output}"));

    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let shown = readme
        .lines()
        .find(|line| line.contains("bots connect to"))
        .expect("the README shows the start-up line");
    let token_in = |line: &str| -> String {
        let at = line.find("token=").unwrap() + "token=".len();
        line[at..].split_whitespace().next().unwrap().to_owned()
    };
    let example = token_in(shown);
    assert_eq!(example.len(), 43, "a whole token: {shown}");
    assert!(
        example
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)),
        "{shown}"
    );
    let expected = printed
        .replace(&token_in(printed), &example)
        .replace(&format!("127.0.0.1:{port}"), "localhost:8080")
        .replace(&data.path().display().to_string(), "./frames");
    let from_info = |line: &str| line[line.find("INFO").unwrap()..].to_owned();
    assert_eq!(from_info(shown), from_info(&expected));
}

/// With PUBLIC_URL set, the start-up lines tell the local address bots connect to apart from
/// the public one that bots created through the API are given.
#[tokio::test]
async fn with_public_url_start_up_says_which_address_is_public() {
    let data = tempfile::tempdir().unwrap();
    let env = [
        ("PUBLIC_URL", "https://frames.example.com"),
        ("RECALL_API_KEY", "test-recall-key"),
        ("WS_TOKEN", WS_TOKEN),
    ];
    let mut server = BinaryServer::spawn(data.path(), &env, &[]);
    let port = server.addr.port();
    assert!(server.terminate());
    let output = server.output();
    let line = |needle: &str| -> String {
        let line = output.lines().find(|line| line.contains(needle));
        let line = line.unwrap_or_else(|| panic!("no {needle:?} in:\n{output}"));
        line[line.find("INFO").unwrap()..].to_owned()
    };
    assert!(
        line("bots connect to").ends_with(&format!(
            "bots connect to ws://127.0.0.1:{port}/ws?token=<WS_TOKEN> (or wss:// behind TLS)"
        )),
        "{output}"
    );
    assert!(
        line("POST /api/bots").contains(
            "POST /api/bots: bots created here stream to wss://frames.example.com/ws \
             (PUBLIC_URL), with the same token"
        ),
        "{output}"
    );
    assert!(
        !output.contains(WS_TOKEN),
        "the token is not logged: {output}"
    );
}

/// A user's mistake is one `error:` line with its causes, even with RUST_BACKTRACE set.
#[tokio::test]
async fn user_errors_print_a_message_not_a_backtrace() {
    let backtrace = [("RUST_BACKTRACE", "1")];
    let bad_flag = recall_frames(
        &backtrace,
        &["simulate", "ws://127.0.0.1:9/ws", "--hosts", "5"],
    )
    .await;
    let stderr = String::from_utf8_lossy(&bad_flag.stderr);
    assert_eq!(bad_flag.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: --hosts 5 is more than --participants 2"),
        "{stderr}"
    );
    assert!(!stderr.to_lowercase().contains("backtrace"), "{stderr}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let data = tempfile::tempdir().unwrap();
    let refused = recall_frames(
        &backtrace,
        &[
            "--listen-address",
            "127.0.0.1",
            "--port",
            &port,
            "--data-dir",
            data.path().to_str().unwrap(),
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with(&format!("error: cannot listen on 127.0.0.1:{port}: ")),
        "{stderr}"
    );
    assert!(!stderr.to_lowercase().contains("backtrace"), "{stderr}");
}

/// A simulator pointed where no server listens says so at once, in one `error:` line that
/// says how to start one, rather than retrying as a bot that lost its server would.
#[tokio::test]
async fn simulate_with_no_server_there_fails_at_once_and_says_how_to_start_one() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let url = format!("ws://127.0.0.1:{port}/ws?token=t");
    let data = tempfile::tempdir().unwrap();
    let output = recall_frames(
        &[],
        &[
            "simulate",
            &url,
            "--data-dir",
            data.path().to_str().unwrap(),
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("attempt"), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(
        errors,
        [format!(
            "error: no server is reachable at ws://127.0.0.1:{port}/ws?token=… (connection \
             refused): start it with `recall-frames serve --port {port}`, or pass the URL the \
             running server printed"
        )],
        "{stderr}"
    );
    assert!(tree(data.path()).is_empty(), "nothing written");
}

/// Logs written to a pipe or a file (Fly's logs, `> server.log`) carry no colour codes, and
/// `LOG_FORMAT=json` writes one JSON object a line for log shippers.
#[tokio::test]
async fn logs_off_a_terminal_are_plain_text_or_json() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let data = tempfile::tempdir().unwrap();
    let args = [
        "--listen-address",
        "127.0.0.1",
        "--port",
        &port,
        "--data-dir",
        data.path().to_str().unwrap(),
    ];
    // The server logs, then cannot bind the taken port and exits.
    let plain = recall_frames(&[], &args).await;
    let stdout = String::from_utf8_lossy(&plain.stdout);
    assert!(stdout.contains("INFO recall_frames"), "{stdout}");
    assert!(
        !stdout.contains('\x1b'),
        "no colour codes in a pipe: {stdout:?}"
    );

    let json = recall_frames(&[("LOG_FORMAT", "json")], &args).await;
    let stdout = String::from_utf8_lossy(&json.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert!(!lines.is_empty(), "a line logged before the bind failed");
    for line in &lines {
        assert_eq!(line["level"], "INFO", "{line}");
        assert!(line["fields"]["message"].is_string(), "{line}");
    }

    let bad = recall_frames(&[("LOG_FORMAT", "yaml")], &args).await;
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("[possible values: text, json]"));
}

/// A free port on 127.0.0.1, for a server the test starts on a port of its choosing.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `recall-frames serve --port N` serves on N: settings are taken after the subcommand as
/// well as before it, and one typed in both places is the one after.
#[tokio::test]
async fn serve_takes_its_settings_after_the_subcommand() {
    let (before, after) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let port = free_port().to_string();
    let server = BinaryServer::spawn_args(
        &[],
        &[
            "--listen-address",
            "127.0.0.1",
            "--data-dir",
            before.path().to_str().unwrap(),
            "serve",
            "--port",
            &port,
            "--data-dir",
            after.path().to_str().unwrap(),
        ],
    );
    assert_eq!(server.addr.to_string(), format!("127.0.0.1:{port}"));
    let health = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let output = server.output();
    let started = output
        .lines()
        .find(|line| line.contains("listening"))
        .unwrap();
    assert!(
        started.contains(&format!("data_dir={}", after.path().display())),
        "{output}"
    );
    assert!(after.path().join(".ws-token").exists());
    assert!(!before.path().join(".ws-token").exists());
}

/// Each subcommand's `--help` lists the settings it reads; `simulate`, a client, lists only
/// the one it reads (`--data-dir`, for the server's token).
#[tokio::test]
async fn each_subcommands_help_lists_the_settings_it_takes() {
    let help = |args: &'static [&'static str]| async move {
        let output = recall_frames(&[], args).await;
        assert!(output.status.success(), "{args:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let serve = help(&["serve", "--help"]).await;
    for option in ["--port", "--data-dir", "--listen-address", "--bucket-name"] {
        assert!(
            serve.contains(option),
            "serve --help lacks {option}:\n{serve}"
        );
    }
    let create = help(&["bot", "create", "--help"]).await;
    for option in [
        "--meeting-url",
        "--recall-api-key",
        "--public-url",
        "--ws-token",
    ] {
        assert!(
            create.contains(option),
            "bot create --help lacks {option}:\n{create}"
        );
    }
    let copy = help(&["copy-to-bucket", "--help"]).await;
    for option in ["--data-dir", "--bucket-name", "--bucket-endpoint"] {
        assert!(
            copy.contains(option),
            "copy-to-bucket --help lacks {option}:\n{copy}"
        );
    }
    let simulate = help(&["simulate", "--help"]).await;
    assert!(simulate.contains("--data-dir"), "{simulate}");
    assert!(
        simulate.contains("without a URL, connect to ws://localhost:PORT/ws"),
        "{simulate}"
    );
    for option in ["--ws-token", "--bucket-name", "--listen-address"] {
        assert!(
            !simulate.contains(option),
            "simulate --help shows {option}:\n{simulate}"
        );
    }
}

/// `bot create --recall-api-key K --meeting-url ...`, with every setting after the
/// subcommand and nothing in the environment, reaches Recall's API with that key.
#[tokio::test]
async fn bot_create_takes_its_settings_after_the_subcommand() {
    use crate::common::recall_api::{RECALL_API_KEY, RecallStandIn};
    let recall = RecallStandIn::start().await;
    let data = tempfile::tempdir().unwrap();
    let base = recall.url();
    let output = recall_frames(
        &[],
        &[
            "bot",
            "create",
            "--recall-api-key",
            RECALL_API_KEY,
            "--recall-api-base",
            &base,
            "--public-url",
            "https://frames.example.com",
            "--ws-token",
            WS_TOKEN,
            "--data-dir",
            data.path().to_str().unwrap(),
            "--meeting-url",
            "https://meet.google.com/abc-defg-hij",
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let bot: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(bot["id"], "00000000-0000-4000-8000-000000000001");
    let received = recall.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].authorization.as_deref(), Some(RECALL_API_KEY));
    assert_eq!(
        received[0].body["recording_config"]["realtime_endpoints"][0]["url"],
        format!("wss://frames.example.com/ws?token={WS_TOKEN}")
    );
}

/// A mistyped setting, before or after the subcommand, is refused with clap's message and
/// its suggestion, and exit status 2; nothing is started.
#[tokio::test]
async fn a_wrong_setting_is_refused_with_a_clear_error() {
    for (args, wrong) in [
        (&["serve", "--prot", "9001"][..], "--prot"),
        (&["--prot", "9001", "serve"][..], "--prot"),
        (
            &[
                "bot",
                "create",
                "--meeting-url",
                "x",
                "--recall-api-kee",
                "k",
            ][..],
            "--recall-api-kee",
        ),
    ] {
        let output = recall_frames(&[], args).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("error: unexpected argument '{wrong}' found")),
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.contains("tip: a similar argument exists"),
            "{stderr}"
        );
    }
    let output = recall_frames(&[], &["serve", "--port", "99999"]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("invalid value '99999' for '--port <PORT>'"),
        "{stderr}"
    );
}

/// The help a newcomer reads: whole sentences, and both ways of naming what to fetch.
#[tokio::test]
async fn delete_and_fetch_media_help_say_what_they_take() {
    let help = recall_frames(&[], &["delete", "--help"]).await;
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("older than --older-than (or RETENTION) is deleted"),
        "{help}"
    );
    assert!(help.contains("`m` is minutes"), "{help}");

    let neither = recall_frames(&[], &["fetch-media"]).await;
    assert!(!neither.status.success());
    let stderr = String::from_utf8_lossy(&neither.stderr);
    assert!(
        stderr.contains("<--bot <BOT>|--recording <RECORDING>>"),
        "{stderr}"
    );
    let help = recall_frames(&[], &["fetch-media", "--help"]).await;
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("Recall's recording id, which is also recall-frames' recording id"),
        "{help}"
    );
}
