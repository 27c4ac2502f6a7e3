//! The browse UI in a real browser: headless Chromium driven over WebDriver (chromedriver on
//! 127.0.0.1) through the index, a recording and the player, with a frame streamed live
//! while the pages are open. Takes the README's screenshots (see `save_screenshot`).
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them), or the
//! binaries the `CHROMIUM` and `CHROMEDRIVER` environment variables name. Without them the
//! test fails under `CI=true` and is skipped elsewhere, saying so on the real stderr, past
//! the test runner's capture (`.config/nextest.toml` shows nextest's).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;
use futures_util::FutureExt as _;
use serde_json::json;
use thirtyfour::prelude::*;
use thirtyfour::{ChromeCapabilities, LoggingPrefsLogLevel};

/// Where Debian puts them; `CHROMIUM` and `CHROMEDRIVER` name others.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const RECORDING: &str = "weekly-sync_7f3e2b";
/// The title in the recording's metadata.
const TITLE: &str = "Weekly sync";
/// Frame size: 16:9, smaller than Recall's 640x360 to keep drawing them quick.
const WIDTH: u32 = 480;
const HEIGHT: u32 = 270;

#[tokio::test]
async fn the_ui_browses_plays_and_updates_live_in_chromium() {
    if browser_binaries().is_none() {
        return;
    }
    let server = TestServer::start().await;
    let mut bot = server.connect().await;
    stream_a_meeting(&mut bot).await;
    server
        .wait_for_frames(&format!("/api/recordings/{RECORDING}/100/webcam"), 12)
        .await;
    server
        .wait_for_frames(&format!("/api/recordings/{RECORDING}/300/webcam"), 12)
        .await;
    write_participant_events(&server.data_dir);

    in_chromium(async |driver| browse(driver, &server, &mut bot).await).await;
    bot.close().await;
}

/// Chromium and chromedriver, or `None` (see [`skip_unless_ci`]) when they are missing.
pub(crate) fn browser_binaries() -> Option<(PathBuf, PathBuf)> {
    let (chromium, chromedriver) = (
        binary("CHROMIUM", CHROMIUM),
        binary("CHROMEDRIVER", CHROMEDRIVER),
    );
    let missing: Vec<String> = [&chromium, &chromedriver]
        .into_iter()
        .filter(|path| !path.exists())
        .map(|path| path.display().to_string())
        .collect();
    if !missing.is_empty() {
        let message = format!(
            "no {} (apt-get install chromium chromium-driver, or set CHROMIUM and CHROMEDRIVER)",
            missing.join(" and ")
        );
        skip_unless_ci(&message, ".ci/run installs them");
        return None;
    }
    Some((chromium, chromedriver))
}

/// The binary the environment variable `variable` names, or `default`.
fn binary(variable: &str, default: &str) -> PathBuf {
    std::env::var_os(variable).map_or_else(|| PathBuf::from(default), PathBuf::from)
}

/// The meeting the screenshots show: a host with webcam and slides, two more people.
async fn stream_a_meeting(bot: &mut Bot) {
    let people: [(u64, Option<&str>, f32); 3] = [
        (100, Some("Alice Smith"), 212.0),
        (200, Some("Bob Okafor"), 150.0),
        (300, Some("Carmen Díaz"), 12.0),
    ];
    // A few poses per person, repeated: drawing frames is the slow part of this test.
    let poses: Vec<Vec<Vec<u8>>> = people
        .iter()
        .map(|(id, _, hue)| {
            (0..4)
                .map(|pose| webcam_png(WIDTH, HEIGHT, *hue, (pose + id) as f32))
                .collect()
        })
        .collect();
    for i in 0..12 {
        let t = i as f64 * 0.5;
        for ((id, name, _), poses) in people.iter().zip(&poses) {
            let frame = TestFrame::new(t)
                .recording(RECORDING)
                .recording_metadata(json!({"title": TITLE}))
                .participant(*id, *name)
                .png(poses[i % 4].clone());
            bot.send_frame(&frame).await;
        }
        if i % 3 == 0 {
            let slide = TestFrame::new(t + 0.25)
                .recording(RECORDING)
                .recording_metadata(json!({"title": TITLE}))
                .kind("screenshare")
                .png(slide_png(WIDTH, HEIGHT, i as u32 / 3));
            bot.send_frame(&slide).await;
        }
    }
}

/// `events.jsonl` in the format the participant-event recorder writes.
fn write_participant_events(data_dir: &Path) {
    let event = |name: &str, id: u64, who: &str, at: f64, data: serde_json::Value| {
        json!({
            "event": format!("participant_events.{name}"),
            "participant": {"id": id, "name": who, "is_host": id == 100, "platform": "desktop",
                            "email": null, "extra_data": {}},
            "timestamp": {"relative": at, "absolute": absolute_time(at)},
            "data": data,
            "received_at": absolute_time(at + 0.2),
        })
        .to_string()
    };
    let lines = [
        event("join", 100, "Alice Smith", 0.0, json!(null)),
        event("join", 200, "Bob Okafor", 0.1, json!(null)),
        event("join", 300, "Carmen Díaz", 0.2, json!(null)),
        event("screenshare_on", 100, "Alice Smith", 0.25, json!(null)),
        event("speech_on", 100, "Alice Smith", 0.5, json!(null)),
        event(
            "chat_message",
            200,
            "Bob Okafor",
            3.2,
            json!({"text": "Slides look great!", "to": "everyone"}),
        ),
        event("speech_off", 100, "Alice Smith", 5.4, json!(null)),
    ];
    std::fs::write(
        data_dir.join(RECORDING).join("events.jsonl"),
        lines.join("\n") + "\n",
    )
    .unwrap();
}

async fn browse(driver: &WebDriver, server: &TestServer, bot: &mut Bot) {
    driver.set_window_rect(0, 0, 1280, 960).await.unwrap();

    // 1. The index lists the recording.
    driver.goto(server.url("/")).await.unwrap();
    let link = driver
        .find(By::LinkText(TITLE))
        .await
        .expect("the index links the recording by its title");
    sees_the_title_and_people_on_the_index(driver).await;
    assert!(all_images_render(driver).await, "index thumbnails render");
    save_screenshot(driver, "screenshot-index.png").await;
    assert_eq!(
        text(driver, ".recording-card .stats div:nth-child(2) dd").await,
        "3 participants"
    );

    // 2. The recording page: a card per participant, the timeline.
    link.click().await.unwrap();
    wait_for(
        driver,
        "the participant cards",
        "document.querySelectorAll('.participant-card').length === 3",
    )
    .await;
    assert!(all_images_render(driver).await, "latest frames render");
    assert_eq!(text(driver, ".participant-card .badge").await, "Host");
    let timeline = text(driver, ".timeline").await;
    assert!(
        timeline.contains("Bob Okafor wrote in the chat: Slides look great!"),
        "the timeline shows the chat message: {timeline}"
    );
    wait_for_live(driver).await;

    // 5. A frame streamed now shows up without a reload: a new person, a newer frame.
    let newcomer = TestFrame::new(6.0)
        .recording(RECORDING)
        .recording_metadata(json!({"title": TITLE}))
        .participant(400, Some("Dev Patel"))
        .png(webcam_png(WIDTH, HEIGHT, 280.0, 3.0));
    bot.send_frame(&newcomer).await;
    let newer = TestFrame::new(6.0)
        .recording(RECORDING)
        .recording_metadata(json!({"title": TITLE}))
        .png(webcam_png(WIDTH, HEIGHT, 212.0, 106.0));
    bot.send_frame(&newer).await;
    wait_for(
        driver,
        "the new participant's card",
        "(() => { const img = document.querySelector('[data-participant=\"400\"] img');
                  return !!img && img.complete && img.naturalWidth > 0; })()",
    )
    .await;
    wait_for(
        driver,
        "Alice's newest webcam frame",
        "(() => { const img = document.querySelector('[data-stream=\"100/webcam\"] img');
                  return img.src.endsWith('/000006000.png') && img.complete && img.naturalWidth > 0; })()",
    )
    .await;
    assert_eq!(
        text(driver, "[data-stream=\"100/webcam\"] .frame-count").await,
        "13 frames"
    );
    driver.set_window_rect(0, 0, 1280, 1140).await.unwrap();
    save_screenshot(driver, "screenshot.png").await;
    driver.set_window_rect(0, 0, 1280, 960).await.unwrap();

    // 3. The player: play, step, and follow the live edge.
    click(driver, By::Css("[data-stream=\"100/webcam\"] a.thumb")).await;
    wait_for(
        driver,
        "the frame list",
        "document.getElementById('position').textContent === '1 of 13'",
    )
    .await;
    wait_for(
        driver,
        "the filmstrip",
        "document.querySelectorAll('#filmstrip img').length === 13",
    )
    .await;
    let speed = driver.find(By::Id("speed")).await.unwrap();
    speed.send_keys("4").await.unwrap();
    click(driver, By::Id("play")).await;
    wait_for(
        driver,
        "playback to move on",
        "document.getElementById('position').textContent !== '1 of 13'",
    )
    .await;
    // 4. Frames render while playing.
    wait_until_rendered(driver, "#frame").await;
    click(driver, By::Id("play")).await; // pause
    let body = driver.find(By::Tag("body")).await.unwrap();
    body.send_keys(Key::Home).await.unwrap();
    assert_eq!(text(driver, "#position").await, "1 of 13");
    body.send_keys(Key::Right).await.unwrap();
    assert_eq!(text(driver, "#position").await, "2 of 13");
    assert_eq!(text(driver, "#relative").await, "0:00.500");
    assert_eq!(
        text(driver, "#absolute").await,
        "2026-11-21 10:00:00.500 UTC"
    );
    body.send_keys(Key::End).await.unwrap();
    wait_for_live(driver).await;
    bot.send_frame(
        &TestFrame::new(6.5)
            .recording(RECORDING)
            .recording_metadata(json!({"title": TITLE}))
            .png(webcam_png(WIDTH, HEIGHT, 212.0, 106.5)),
    )
    .await;
    wait_for(
        driver,
        "the live frame in the player",
        "document.getElementById('frame').src.endsWith('/000006500.png')
         && document.getElementById('position').textContent === '14 of 14'",
    )
    .await;
    wait_until_rendered(driver, "#frame").await;
    body.send_keys(Key::Left).await.unwrap();
    assert!(
        all_images_render(driver).await,
        "filmstrip thumbnails render"
    );
    driver.set_window_rect(0, 0, 1280, 1300).await.unwrap();
    save_screenshot(driver, "screenshot-player.png").await;

    opens_at_a_moment_and_keeps_it_in_the_address(driver, server).await;

    // The same pages at phone width.
    driver.set_window_rect(0, 0, 390, 844).await.unwrap();
    let phone_pages = [
        (
            format!("/recordings/{RECORDING}"),
            "document.querySelectorAll('.participant-card').length === 4",
            "screenshot-phone.png",
        ),
        (
            format!("/recordings/{RECORDING}/100/screenshare"),
            "document.getElementById('position').textContent === '1 of 4'",
            "phone-player.png",
        ),
    ];
    for (path, ready, screenshot) in phone_pages {
        driver.goto(server.url(&path)).await.unwrap();
        wait_for(driver, &path, ready).await;
        assert!(all_images_render(driver).await, "{path}: images render");
        assert!(
            fits_the_width(driver).await,
            "{path}: nothing is wider than a phone screen"
        );
        save_screenshot(driver, screenshot).await;
    }

    // 6. Nothing went wrong in the browser.
    no_console_errors(driver).await;
}

/// The card names the meeting and its people; the id is there, as secondary text.
async fn sees_the_title_and_people_on_the_index(driver: &WebDriver) {
    assert_eq!(text(driver, ".recording-card h2").await, TITLE);
    assert_eq!(
        text(driver, ".recording-card .recording-id code").await,
        RECORDING
    );
    let people = text(driver, ".recording-card .people").await;
    assert!(
        people.ends_with("Alice Smith, Bob Okafor and Carmen Díaz"),
        "{people}"
    );
    assert!(
        driver.title().await.unwrap().starts_with("Recordings"),
        "the index's own title"
    );
}

/// A stream page opened at `?t=` shows the frame at or before that time, at no more than
/// its own size; playing keeps `?t=` on the frame shown; the link to a moment can be copied,
/// or read off the page where the clipboard cannot be used.
async fn opens_at_a_moment_and_keeps_it_in_the_address(driver: &WebDriver, server: &TestServer) {
    driver.set_window_rect(0, 0, 1280, 960).await.unwrap();
    let stream = format!("/recordings/{RECORDING}/100/webcam");
    // Alice's webcam has frames every 0.5 s from 0 to 6.5: 2.7 s falls on the one at 2.5 s.
    driver
        .goto(server.url(&format!("{stream}?t=2.7")))
        .await
        .unwrap();
    wait_for(
        driver,
        "the frame at 2.5 s",
        "document.getElementById('position').textContent === '6 of 14'",
    )
    .await;
    assert_eq!(text(driver, "#relative").await, "0:02.500");
    assert_eq!(
        text(driver, ".crumbs a:nth-of-type(2)").await,
        TITLE,
        "the breadcrumb names the recording"
    );
    wait_until_rendered(driver, "#frame").await;
    assert!(
        shown_frame_src(driver).await.ends_with("/000002500.png"),
        "the picture is the frame at 2.5 s"
    );
    assert_eq!(
        address_t(driver).await.as_deref(),
        Some("2.7"),
        "opening moves nothing"
    );

    // Room to spare: the frame at its own size, not stretched to the page.
    let (shown, natural) = frame_widths(driver).await;
    assert_eq!(
        shown, natural,
        "shown at its own size: {shown} px of {natural}"
    );
    assert_eq!(natural, f64::from(WIDTH));

    // Playing (at 1x: frames every 0.5 s, far from the end) moves ?t= with the frame shown.
    click(driver, By::Id("play")).await;
    wait_for(
        driver,
        "?t= to move on as the player plays",
        "Number(new URLSearchParams(location.search).get('t')) > 2.7",
    )
    .await;
    assert_eq!(text(driver, "#play").await, "Pause", "still playing");
    click(driver, By::Id("play")).await; // pause
    wait_for(
        driver,
        "?t= to settle on the frame shown",
        "(() => { const ms = Number(document.getElementById('frame').src.match(/(\\d{9})\\.png$/)[1]);
                  return Math.round(Number(new URLSearchParams(location.search).get('t')) * 1000) === ms; })()",
    )
    .await;
    let moment = address_t(driver).await.expect("?t= in the address");
    let position = text(driver, "#position").await;

    // Without a clipboard (as over plain http), the link is shown to copy by hand; the
    // button works from the keyboard.
    driver
        .execute(
            "Object.defineProperty(navigator, 'clipboard', {value: undefined, configurable: true})",
            vec![],
        )
        .await
        .unwrap();
    driver
        .find(By::Id("copy-link"))
        .await
        .unwrap()
        .send_keys(Key::Enter)
        .await
        .unwrap();
    wait_for(
        driver,
        "the link shown by hand",
        "!document.getElementById('share').hidden",
    )
    .await;
    let link: String = driver
        .execute(
            "const input = document.getElementById('share-link');
             return document.activeElement === input ? input.value : 'not focused';",
            vec![],
        )
        .await
        .unwrap()
        .convert()
        .unwrap();
    assert_eq!(
        link,
        server.url(&format!("{stream}?t={moment}")),
        "the link names this moment"
    );
    assert!(
        text(driver, "#copy-status")
            .await
            .contains("copy the selected link"),
        "the status says what to do"
    );

    // The link opens where it was taken.
    driver.goto(&link).await.unwrap();
    wait_for(
        driver,
        "the linked frame",
        &format!("document.getElementById('position').textContent === '{position}'"),
    )
    .await;

    // With the clipboard the browser offers, the link is copied (or, if the browser
    // refuses, shown as above): either way the page says so.
    click(driver, By::Id("copy-link")).await;
    wait_for(
        driver,
        "the copy to be confirmed or the link shown",
        "document.getElementById('copy-status').textContent !== ''",
    )
    .await;
    let said = text(driver, "#copy-status").await;
    let shown: bool = driver
        .execute("return !document.getElementById('share').hidden", vec![])
        .await
        .unwrap()
        .convert()
        .unwrap();
    assert!(
        said.ends_with("copied") || (shown && said.contains("copy the selected link")),
        "{said}"
    );

    // A phone: scaled down to fit, never wider than the screen.
    driver.set_window_rect(0, 0, 390, 844).await.unwrap();
    wait_until_rendered(driver, "#frame").await;
    let (shown, natural) = frame_widths(driver).await;
    assert!(
        shown < natural && shown <= 390.0,
        "scaled down to fit: {shown} px of {natural}"
    );
    assert!(fits_the_width(driver).await, "{stream}: fits a phone");
}

/// The player's picture's rendered width and the width of the frame it shows.
async fn frame_widths(driver: &WebDriver) -> (f64, f64) {
    let widths: Vec<f64> = driver
        .execute(
            "const img = document.getElementById('frame');
             return [img.getBoundingClientRect().width, img.naturalWidth];",
            vec![],
        )
        .await
        .unwrap()
        .convert()
        .unwrap();
    (widths[0], widths[1])
}

async fn shown_frame_src(driver: &WebDriver) -> String {
    driver
        .execute("return document.getElementById('frame').src", vec![])
        .await
        .unwrap()
        .convert()
        .unwrap()
}

/// `?t=` of the page's address, as written.
async fn address_t(driver: &WebDriver) -> Option<String> {
    driver
        .execute(
            "return new URLSearchParams(location.search).get('t')",
            vec![],
        )
        .await
        .unwrap()
        .convert()
        .unwrap()
}

/// Whether the page needs no sideways scrolling.
pub(crate) async fn fits_the_width(driver: &WebDriver) -> bool {
    driver
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth",
            vec![],
        )
        .await
        .unwrap()
        .convert()
        .unwrap()
}

pub(crate) async fn click(driver: &WebDriver, what: By) {
    driver.find(what).await.unwrap().click().await.unwrap();
}

pub(crate) async fn text(driver: &WebDriver, css: &str) -> String {
    driver
        .find(By::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Polls a JavaScript condition until it holds, failing after the patience.
pub(crate) async fn wait_for(driver: &WebDriver, what: &str, condition: &str) {
    let script = format!("return !!({condition});");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let holds: bool = driver
            .execute(script.as_str(), vec![])
            .await
            .unwrap()
            .convert()
            .unwrap();
        if holds {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the page follows live events.
pub(crate) async fn wait_for_live(driver: &WebDriver) {
    wait_for(
        driver,
        "live updates",
        "document.getElementById('live-status').dataset.state === 'on'",
    )
    .await;
}

/// Waits until the image `css` selects has loaded and decoded (`naturalWidth > 0`).
pub(crate) async fn wait_until_rendered(driver: &WebDriver, css: &str) {
    let image = format!("document.querySelector('{css}')");
    wait_for(
        driver,
        &format!("{css} to render"),
        &format!("{image}.complete && {image}.naturalWidth > 0"),
    )
    .await;
}

/// Whether every image on the page has loaded and decoded (`naturalWidth > 0`).
pub(crate) async fn all_images_render(driver: &WebDriver) -> bool {
    wait_for(
        driver,
        "images to load",
        "[...document.images].every(img => img.complete)",
    )
    .await;
    driver
        .execute(
            "return document.images.length > 0 && [...document.images].every(img => img.naturalWidth > 0)",
            vec![],
        )
        .await
        .unwrap()
        .convert()
        .unwrap()
}

/// Saves what the browser shows as `target/browser/<name>`, and as `docs/<name>` (the
/// README's pictures) when `UPDATE_SCREENSHOTS=1`: a plain test run leaves the work tree
/// as it was.
pub(crate) async fn save_screenshot(driver: &WebDriver, name: &str) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = root.join("target/browser").join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // Let the last images paint.
    tokio::time::sleep(Duration::from_millis(200)).await;
    driver.screenshot(&path).await.unwrap();
    let png = std::fs::read(&path).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
    let in_readme = [
        "screenshot.png",
        "screenshot-player.png",
        "screenshot-phone.png",
        "screenshot-replay.png",
        "screenshot-replay-phone.png",
    ];
    if in_readme.contains(&name) && std::env::var("UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        std::fs::write(root.join("docs").join(name), png).unwrap();
    }
}

/// chromedriver on a free loopback port with a session of headless Chromium.
/// Runs `body` against a fresh headless Chromium, closing it whatever happens; nothing
/// (see [`skip_unless_ci`]) without Chromium and chromedriver.
pub(crate) async fn in_chromium(body: impl AsyncFnOnce(&WebDriver)) {
    let Some((chromium, chromedriver)) = browser_binaries() else {
        return;
    };
    let driver = Chromium::start(&chromium, &chromedriver).await;
    let outcome = std::panic::AssertUnwindSafe(body(&driver.session))
        .catch_unwind()
        .await;
    driver.stop().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Fails on any error the page logged to the console.
pub(crate) async fn no_console_errors(driver: &WebDriver) {
    let errors: Vec<String> = driver
        .browser_log()
        .await
        .unwrap()
        .into_iter()
        .filter(|entry| entry.level == "SEVERE")
        .map(|entry| entry.message)
        .collect();
    assert!(errors.is_empty(), "browser console errors: {errors:#?}");
}

pub(crate) struct Chromium {
    pub(crate) session: WebDriver,
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Chromium {
    pub(crate) async fn start(chromium: &Path, chromedriver: &Path) -> Chromium {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let driver = tokio::process::Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        eventually("chromedriver answers", || async {
            reqwest::get(format!("{url}/status"))
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await;

        let profile = tempfile::tempdir().unwrap();
        let mut caps: ChromeCapabilities = DesiredCapabilities::chrome();
        caps.set_binary(chromium.to_str().expect("a UTF-8 path"))
            .unwrap();
        for arg in [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            // The player plays audio with the frames, unattended: no click to allow it.
            "--autoplay-policy=no-user-gesture-required",
        ] {
            caps.add_arg(arg).unwrap();
        }
        caps.add_arg(&format!("--user-data-dir={}", profile.path().display()))
            .unwrap();
        caps.set_browser_log_level(LoggingPrefsLogLevel::All)
            .unwrap();
        let session = WebDriver::new(url, caps).await.expect("a Chromium session");
        Chromium {
            session,
            driver,
            _profile: profile,
        }
    }

    pub(crate) async fn stop(self) {
        let Chromium {
            session,
            mut driver,
            _profile,
        } = self;
        let _ = session.quit().await;
        let _ = driver.kill().await;
    }
}

/// Alice's webcam in the audio test: a frame every half second from 0 to 9.5 s.
const AUDIO_FRAMES: u64 = 20;

#[tokio::test]
async fn the_player_plays_a_participants_audio_with_the_frames_in_chromium() {
    if browser_binaries().is_none() {
        return;
    }
    let server = TestServer::start().await;
    let mut bot = server.connect().await;
    // Alice shows her webcam for 10 s and speaks from 2 s to 8 s (a tone, in 1 s chunks);
    // Bob only shows his.
    for i in 0..AUDIO_FRAMES {
        let t = i as f64 * 0.5;
        bot.send_frame(&TestFrame::new(t)).await;
        bot.send_frame(&TestFrame::new(t).participant(200, Some("Bob Okafor")))
            .await;
    }
    for second in 2..8 {
        let tone: Vec<i16> = (0..16_000)
            .map(|i| ((i as f64 * 440.0 / 16_000.0 * std::f64::consts::TAU).sin() * 8_000.0) as i16)
            .collect();
        bot.send_text(TestAudio::new(f64::from(second), tone).event())
            .await;
    }
    for participant in [100, 200] {
        server
            .wait_for_frames(
                &format!("/api/recordings/rec_9f1c2a/{participant}/webcam"),
                AUDIO_FRAMES,
            )
            .await;
    }
    wait_for_chunks(&server, "/api/recordings/rec_9f1c2a/100/audio", 6).await;

    in_chromium(async |driver| listen(driver, &server).await).await;
    bot.close().await;
}

async fn listen(driver: &WebDriver, server: &TestServer) {
    driver.set_window_rect(0, 0, 1280, 960).await.unwrap();

    // The card shows where Alice spoke: the bar starts a quarter of the way along (2 s of
    // her 8 s track); Bob's card has no audio.
    driver
        .goto(server.url("/recordings/rec_9f1c2a"))
        .await
        .unwrap();
    wait_for(
        driver,
        "Alice's audio bar",
        "document.querySelectorAll('[data-participant=\"100\"] .audio-bar rect').length > 0",
    )
    .await;
    let (first, buckets): (f64, f64) = driver
        .execute(
            "const svg = document.querySelector('[data-participant=\"100\"] .audio-bar svg');
             const xs = [...svg.querySelectorAll('rect')].map(r => Number(r.getAttribute('x')));
             return [Math.min(...xs), svg.viewBox.baseVal.width];",
            vec![],
        )
        .await
        .unwrap()
        .convert()
        .unwrap();
    assert!(
        (first / buckets - 0.25).abs() < 0.02,
        "the bar starts where she starts speaking: bucket {first} of {buckets}"
    );
    let player_src: String = driver
        .execute(
            "return document.querySelector('[data-participant=\"100\"] audio').getAttribute('src');",
            vec![],
        )
        .await
        .unwrap()
        .convert()
        .unwrap();
    assert_eq!(player_src, "/api/recordings/rec_9f1c2a/100/audio.wav");
    let bob_audio: bool = driver
        .execute(
            "return !!document.querySelector('[data-participant=\"200\"] .audio-tile');",
            vec![],
        )
        .await
        .unwrap()
        .convert()
        .unwrap();
    assert!(!bob_audio, "Bob sent no audio");
    save_screenshot(driver, "audio-card.png").await;

    // The player plays her audio, the frames following its clock.
    let stream = "/recordings/rec_9f1c2a/100/webcam";
    driver.goto(server.url(stream)).await.unwrap();
    wait_for(
        driver,
        "the frame list",
        &format!("document.getElementById('position').textContent === '1 of {AUDIO_FRAMES}'"),
    )
    .await;
    click(driver, By::Id("play")).await;
    wait_for(
        driver,
        "the audio to play past 1 s",
        "(() => { const a = document.getElementById('audio'); return !a.paused && a.currentTime > 1; })()",
    )
    .await;
    let mut last_audio = 0.0;
    for _ in 0..5 {
        let (audio, frame) = audio_and_frame_clock(driver).await;
        // The frame shown is the one at or before the audio's time: at most a frame (0.5 s)
        // behind, with some slack for the 40 ms the player takes to look again.
        assert!(
            frame <= audio + 0.1 && audio - frame < 0.5 + 0.2,
            "audio at {audio} s, frame at {frame} s"
        );
        assert!(
            audio > last_audio,
            "the audio moves on: {audio} after {last_audio}"
        );
        last_audio = audio;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let speed = driver.find(By::Id("speed")).await.unwrap();
    speed.send_keys("2").await.unwrap();
    wait_for(
        driver,
        "the audio at double speed",
        "document.getElementById('audio').playbackRate === 2",
    )
    .await;

    // Seeking moves the audio with the frames: keys, then the scrubber.
    let body = driver.find(By::Tag("body")).await.unwrap();
    body.send_keys(Key::Home).await.unwrap();
    assert_eq!(audio_and_frame_clock(driver).await, (0.0, 0.0));
    assert!(
        audio_paused(driver).await,
        "a step pauses the player and its audio"
    );
    driver
        .execute(
            "const s = document.getElementById('scrubber');
             s.value = 10; s.dispatchEvent(new Event('input', { bubbles: true }));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(audio_and_frame_clock(driver).await, (5.0, 5.0));
    body.send_keys(Key::Right).await.unwrap();
    assert_eq!(audio_and_frame_clock(driver).await, (5.5, 5.5));
    // Played from there, it goes on past the audio's end (8 s) to the last frame.
    click(driver, By::Id("play")).await;
    wait_for(
        driver,
        "the audio to play on from 5.5 s",
        "(() => { const a = document.getElementById('audio'); return !a.paused && a.currentTime > 5.6; })()",
    )
    .await;
    wait_for(
        driver,
        "the last frame, past the audio",
        &format!(
            "document.getElementById('position').textContent === '{AUDIO_FRAMES} of {AUDIO_FRAMES}'"
        ),
    )
    .await;

    // Opened at a moment, the audio waits there.
    driver
        .goto(server.url(&format!("{stream}?t=3.2")))
        .await
        .unwrap();
    wait_for(
        driver,
        "the frame at 3 s and its audio",
        "document.getElementById('relative').textContent === '0:03.000'
         && document.getElementById('audio').currentTime === 3",
    )
    .await;

    // Bob has no audio, and the player says so.
    driver
        .goto(server.url("/recordings/rec_9f1c2a/200/webcam"))
        .await
        .unwrap();
    wait_for(
        driver,
        "Bob's frames",
        &format!("document.getElementById('position').textContent === '1 of {AUDIO_FRAMES}'"),
    )
    .await;
    assert_eq!(text(driver, "#audio-status").await, "No audio");
    assert!(driver.find(By::Id("audio")).await.is_err());

    no_console_errors(driver).await;
}

/// The player's audio time and the time of the frame it shows, in seconds.
async fn audio_and_frame_clock(driver: &WebDriver) -> (f64, f64) {
    let (audio, shown): (f64, String) = driver
        .execute(
            "return [document.getElementById('audio').currentTime,
                     document.getElementById('relative').textContent];",
            vec![],
        )
        .await
        .unwrap()
        .convert()
        .unwrap();
    // "0:05.500" as the player writes it.
    let (minutes, seconds) = shown.split_once(':').expect("m:ss.mmm");
    let frame = minutes.parse::<f64>().unwrap() * 60.0 + seconds.parse::<f64>().unwrap();
    ((audio * 1000.0).round() / 1000.0, frame)
}

async fn audio_paused(driver: &WebDriver) -> bool {
    driver
        .execute("return document.getElementById('audio').paused;", vec![])
        .await
        .unwrap()
        .convert()
        .unwrap()
}

/// After the call (issue 13): the recording page shows each participant's Recall MP4 and
/// audio in players on the recording's timeline, with sizes and durations, the fetch status
/// and the bot's status history.
#[tokio::test]
async fn the_recording_page_plays_recalls_media_after_the_call_in_chromium() {
    use crate::after_call::{BOT, audio_part, ffmpeg, start, video_part, wait_for_fetch, webhook};
    use crate::common::recall_api::RecallStandIn;
    use crate::common::recall_api::media::{bot_status_webhook, media_webhook};
    if browser_binaries().is_none() {
        return;
    }
    let (Some(mp4), Some(mp3)) = (
        ffmpeg("testsrc=size=160x120:rate=10", "a.mp4"),
        ffmpeg("sine=frequency=440:duration=1", "b.mp3"),
    ) else {
        return;
    };
    let recall = RecallStandIn::start().await;
    recall.add_media(
        "rec_9f1c2a",
        "video_separate",
        "vs_1",
        true,
        vec![video_part("p_v", 100, "Alice Smith", 0.5, &mp4)],
    );
    recall.add_media(
        "rec_9f1c2a",
        "audio_separate",
        "as_1",
        true,
        vec![audio_part("p_a", 200, "Bob Okafor", 2.0, &mp3)],
    );
    let server = start(&recall, &[]).await;
    let mut bot = server.connect().await;
    for i in 0..8 {
        bot.send_frame(&TestFrame::new(f64::from(i) * 0.5)).await;
    }
    server
        .wait_for_frames("/api/recordings/rec_9f1c2a/100/webcam", 8)
        .await;
    let base = server.url("");
    for (id, body) in [
        (
            "m1",
            bot_status_webhook(BOT, "in_call_recording", None, "2026-11-21T10:00:00Z"),
        ),
        (
            "m2",
            bot_status_webhook(
                BOT,
                "call_ended",
                Some("call_ended_by_host"),
                "2026-11-21T10:30:00Z",
            ),
        ),
        (
            "m3",
            media_webhook("recording.done", "rec_9f1c2a", BOT, "rec"),
        ),
    ] {
        assert_eq!(webhook(&base, id, &body).await, 200);
    }
    wait_for_fetch(&base, "video", "done").await;
    wait_for_fetch(&base, "audio", "done").await;

    in_chromium(async |session| {
        session.set_window_rect(0, 0, 1280, 1200).await.unwrap();
        session
            .goto(server.url("/recordings/rec_9f1c2a"))
            .await
            .unwrap();
        let section = "document.getElementById('recall-media')";
        wait_for(session, "the section", section).await;
        // Both players load their files: Chromium reads the MP4's and the MP3's headers.
        wait_for(
            session,
            "the MP4 to load",
            "(v => v && v.readyState >= 1 && v.videoWidth === 160)(document.querySelector('#recall-media video.recall-player'))",
        )
        .await;
        wait_for(
            session,
            "the MP3 to load",
            "(a => a && a.readyState >= 1 && Math.abs(a.duration - 1) < 0.2)(document.querySelector('#recall-media audio.recall-player'))",
        )
        .await;
        let video_src: String = session
            .execute("return document.querySelector('#recall-media video').src", vec![])
            .await
            .unwrap()
            .convert()
            .unwrap();
        assert!(video_src.ends_with("/rec_9f1c2a/100/recall/webcam-500.mp4"), "{video_src}");
        // Placed on the timeline: Bob's audio starts at 2 s of 3.5 s.
        let left: String = session
            .execute(
                "return document.querySelector('.recall-row[data-participant=\"200\"] .recall-bar.part').style.left",
                vec![],
            )
            .await
            .unwrap()
            .convert()
            .unwrap();
        assert_eq!(left, "57.143%");
        let captions = text(session, "#recall-media .recall-rows").await;
        assert!(captions.contains("from 0:00.500") && captions.contains("KB"), "{captions}");
        let status = text(session, "#recall-media .recall-fetch").await;
        assert!(status.contains("fetched: 1 of 1 parts"), "{status}");
        let history = text(session, "#recall-media .bot-status").await;
        assert!(
            history.contains("in_call_recording") && history.contains("call_ended_by_host"),
            "{history}"
        );
        // On the recording's clock: recording began at 10:00:00, the call ended 30 min on.
        assert!(history.contains("0:00.000") && history.contains("30:00.000"), "{history}");
        let markers: i64 = session
            .execute(
                "return document.querySelectorAll('.bot-row .recall-bar.status').length",
                vec![],
            )
            .await
            .unwrap()
            .convert()
            .unwrap();
        assert_eq!(markers, 2, "the bot's statuses on the timeline");
        // Its bar plays Bob's audio.
        click(
            session,
            By::Css(".recall-row[data-participant=\"200\"] .recall-bar.part"),
        )
        .await;
        wait_for(
            session,
            "the audio to play",
            "!document.querySelector('#recall-media audio').paused",
        )
        .await;
        save_screenshot(session, "screenshot-after-the-call.png").await;
    })
    .await;
    bot.close().await;
}

#[tokio::test]
async fn export_mp4_shows_its_progress_then_a_download_in_chromium() {
    if !need_ffmpeg() {
        return;
    }
    if browser_binaries().is_none() {
        return;
    }
    let server = TestServer::start().await;
    let mut bot = server.connect().await;
    for i in 0..6 {
        let t = 0.5 + i as f64;
        let png = webcam_png(WIDTH, HEIGHT, 210.0, t as f32);
        bot.send_frame(&TestFrame::new(t).recording(RECORDING).png(png))
            .await;
    }
    server
        .wait_for_frames(&format!("/api/recordings/{RECORDING}/100/webcam"), 6)
        .await;
    in_chromium(async |session| {
        session
            .goto(server.url(&format!("/recordings/{RECORDING}/100/webcam")))
            .await
            .unwrap();
        click(session, By::Css("button[data-export]")).await;
        wait_for(
            session,
            "the download link",
            "document.querySelector('.export-status a')",
        )
        .await;
        let link = text(session, ".export-status a").await;
        assert!(link.contains("6 frames"), "{link}");
        let href: String = session
            .execute(
                "return document.querySelector('.export-status a').getAttribute('href')",
                vec![],
            )
            .await
            .unwrap()
            .convert()
            .unwrap();
        let mp4 = server.get(&href).await;
        assert_eq!(mp4.headers()["content-type"], "video/mp4");

        // The recording page: the contact sheet, and a preview once asked for.
        session
            .goto(server.url(&format!("/recordings/{RECORDING}")))
            .await
            .unwrap();
        assert!(
            all_images_render(session).await,
            "the contact sheet renders"
        );
        click(session, By::Css(".previews summary")).await;
        wait_for(
            session,
            "a preview",
            "document.querySelector('.previews img')",
        )
        .await;
        wait_until_rendered(session, ".previews img").await;
    })
    .await;
    bot.close().await;
}
