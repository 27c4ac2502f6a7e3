//! The deployment files agree with the server: the port it listens on, the folder it writes
//! to, the signal it drains on, and how long draining may take.

use std::path::Path;
use std::time::Duration;

use recall_frames::{Config, SHUTDOWN_SIGNALS};

fn read(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn defaults() -> Config {
    Config::from_args(Vec::<String>::new()).expect("the defaults parse")
}

/// A Dockerfile's instructions, as (keyword, arguments): comments and parser directives
/// dropped, continuation lines joined.
fn instructions(dockerfile: &str) -> Vec<(String, String)> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        // Docker drops comment and empty lines, within continuations too.
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head.trim_end());
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    joined
        .into_iter()
        .map(|line| {
            let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
            (keyword.to_ascii_uppercase(), rest.trim().to_owned())
        })
        .collect()
}

/// The instructions of the image that runs: those after the last `FROM`.
fn runtime_stage(dockerfile: &str) -> Vec<(String, String)> {
    let all = instructions(dockerfile);
    let last_from = all
        .iter()
        .rposition(|(keyword, _)| keyword == "FROM")
        .expect("a FROM");
    all[last_from..].to_vec()
}

fn one<'a>(stage: &'a [(String, String)], keyword: &str) -> &'a str {
    let found: Vec<_> = stage.iter().filter(|(k, _)| k == keyword).collect();
    assert_eq!(found.len(), 1, "one {keyword} in the runtime stage");
    &found[0].1
}

/// `ENV KEY=VALUE ...` pairs of a stage.
fn env(stage: &[(String, String)]) -> Vec<(String, String)> {
    stage
        .iter()
        .filter(|(k, _)| k == "ENV")
        .flat_map(|(_, args)| args.split_whitespace())
        .map(|pair| {
            let (key, value) = pair.split_once('=').expect("ENV KEY=VALUE");
            (key.to_owned(), value.trim_matches('"').to_owned())
        })
        .collect()
}

fn data_dir(stage: &[(String, String)]) -> String {
    env(stage)
        .into_iter()
        .find_map(|(key, value)| (key == "DATA_DIR").then_some(value))
        .expect("the runtime image sets DATA_DIR")
}

fn signal_names() -> Vec<&'static str> {
    SHUTDOWN_SIGNALS.iter().map(|(name, _)| *name).collect()
}

#[test]
fn the_dockerfile_builds_locked_and_runs_the_server_as_configured() {
    let dockerfile = read("Dockerfile");
    let all = instructions(&dockerfile);
    assert!(
        all.iter().filter(|(k, _)| k == "FROM").count() >= 2,
        "multi-stage"
    );
    assert!(
        all.iter()
            .any(|(k, args)| k == "RUN" && args.contains("cargo build --release --locked")),
        "the release build uses the lock file"
    );

    let runtime = runtime_stage(&dockerfile);
    let image = one(&runtime, "FROM");
    assert!(image.starts_with("debian:bookworm-slim"), "{image}");
    assert!(
        runtime
            .iter()
            .any(|(k, args)| k == "RUN" && args.contains("ca-certificates")),
        "CA certificates for HTTPS to Recall"
    );

    let defaults = defaults();
    let port: u16 = one(&runtime, "EXPOSE").parse().expect("EXPOSE <port>");
    assert_eq!(port, defaults.port, "EXPOSE is the server's default port");
    assert!(
        env(&runtime).iter().all(|(key, _)| key != "PORT"),
        "PORT is left to its default"
    );
    let data = data_dir(&runtime);
    let config = Config::from_args(["--data-dir", &data]).expect("DATA_DIR parses");
    assert_eq!(config.data_dir, Path::new("/data"));

    let signal = one(&runtime, "STOPSIGNAL");
    assert!(
        signal_names().contains(&signal),
        "the server drains on {signal}"
    );

    let user = one(&runtime, "USER");
    let uid = user.split(':').next().unwrap();
    assert!(!matches!(uid, "0" | "root"), "runs as a non-root user");
    assert!(one(&runtime, "CMD").contains("recall-frames"));
}

#[test]
fn fly_toml_agrees_with_the_dockerfile_and_the_server() {
    let fly: toml::Table = read("fly.toml").parse().expect("fly.toml is TOML");
    let runtime = runtime_stage(&read("Dockerfile"));
    let defaults = defaults();

    assert_eq!(fly["build"]["dockerfile"].as_str(), Some("Dockerfile"));

    let service = &fly["http_service"];
    assert_eq!(
        service["internal_port"].as_integer(),
        Some(i64::from(defaults.port))
    );
    assert_eq!(service["force_https"].as_bool(), Some(true));
    // A bot that loses its connection retries for about 90 s: the machine must stay up.
    let never_stopped = matches!(
        service.get("auto_stop_machines"),
        Some(toml::Value::Boolean(false))
    ) || service.get("auto_stop_machines").and_then(|v| v.as_str())
        == Some("off");
    let kept_running = service
        .get("min_machines_running")
        .and_then(|v| v.as_integer())
        .is_some_and(|n| n >= 1);
    assert!(never_stopped || kept_running, "machines are kept running");
    let check = service["checks"]
        .as_array()
        .and_then(|checks| checks.first())
        .expect("an HTTP check");
    assert_eq!(check["path"].as_str(), Some("/healthz"));

    let mounts = match &fly["mounts"] {
        toml::Value::Array(mounts) => mounts.clone(),
        table => vec![table.clone()],
    };
    assert_eq!(mounts.len(), 1);
    assert_eq!(
        mounts[0]["destination"].as_str(),
        Some(data_dir(&runtime).as_str()),
        "the volume is mounted at DATA_DIR"
    );

    let signal = fly["kill_signal"].as_str().expect("kill_signal");
    assert_eq!(
        signal,
        one(&runtime, "STOPSIGNAL"),
        "Fly and Docker stop it alike"
    );
    assert!(signal_names().contains(&signal));

    let kill_timeout = match &fly["kill_timeout"] {
        toml::Value::Integer(seconds) => Duration::from_secs(u64::try_from(*seconds).unwrap()),
        toml::Value::String(text) => humantime::parse_duration(text).expect("a duration"),
        other => panic!("kill_timeout {other}"),
    };
    assert!(
        kill_timeout >= defaults.shutdown_timeout + Duration::from_secs(5),
        "Fly waits longer ({kill_timeout:?}) than a drain may take ({:?}), with time to exit",
        defaults.shutdown_timeout
    );
    assert!(kill_timeout <= Duration::from_secs(300), "Fly's maximum");

    let vm = fly["vm"]
        .as_array()
        .and_then(|vms| vms.first())
        .expect("a [[vm]]");
    assert!(vm.get("size").is_some() || vm.get("memory").is_some());
}

#[test]
fn the_dockerfile_reader_joins_lines_and_skips_comments() {
    let parsed = instructions(
        "# syntax=docker/dockerfile:1\nFROM a AS b\n\n# note\nRUN x \\\n    && y\nenv K=v L=\"w\"\n",
    );
    assert_eq!(
        parsed,
        [
            ("FROM".to_owned(), "a AS b".to_owned()),
            ("RUN".to_owned(), "x && y".to_owned()),
            ("ENV".to_owned(), "K=v L=\"w\"".to_owned()),
        ]
    );
    assert_eq!(
        env(&parsed),
        [
            ("K".to_owned(), "v".to_owned()),
            ("L".to_owned(), "w".to_owned())
        ]
    );
}
