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
