//! The file-system sink, the embedded default: writes the layout of [`crate::layout`] under
//! `DATA_DIR`. Frames are written to a temporary file and renamed into place without ever
//! replacing an existing name, so readers never see half a PNG and nothing is overwritten.
//! Participant events are appended to the recording's `events.jsonl`, a whole line at a
//! time, under the same per-recording state that names participant folders.
//! Files are not fsynced: a killed process loses nothing it has saved; a power cut may.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use jiff::Timestamp;
use parking_lot::Mutex;
use serde::Serialize;

use super::{Described, FrameSink, Lease, Recordings, SinkError, StreamWriter, WriteOutcome};
use crate::files::{FsError, IoContext as _, blocking};
use crate::frame::{
    Frame, Participant, ParticipantEvent, ParticipantId, RecordingId, RecordingInfo,
};
use crate::layout::{self, EventRecord, FrameRecord, RecordingSummary};

/// How often, at most, a busy recording's `recording.json` is rewritten with new frame times.
const SUMMARY_EVERY: Duration = Duration::from_secs(2);
const TEMP_SUFFIX: &str = ".tmp";

/// Replaces `path` with `contents` atomically: readers see the old file or the new one.
pub fn write_file_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(".")
        .suffix(TEMP_SUFFIX)
        .tempfile_in(dir)?;
    temp.write_all(contents)?;
    temp.persist(path)?;
    Ok(())
}

async fn write_json_atomic(path: PathBuf, value: &impl Serialize) -> Result<(), FsError> {
    let mut json = serde_json::to_vec_pretty(value)
        .map_err(io::Error::from)
        .at("encode", &path)?;
    json.push(b'\n');
    blocking(move || write_file_atomic(&path, &json).at("write", &path)).await
}

pub struct FsSink {
    shared: Arc<Shared>,
}

struct Shared {
    root: PathBuf,
    /// Prefix of this process's temporary files, so that a stream opening after a crash can
    /// tell leftovers (removed) from writes still in progress (kept).
    temp_prefix: String,
    recordings: Recordings<RecordingDir>,
}

impl FsSink {
    /// Writes under `root` (created if missing) after checking that files can be made there.
    pub async fn new(root: PathBuf) -> Result<Self, FsError> {
        let probe_root = root.clone();
        blocking(move || {
            fs::create_dir_all(&probe_root).at("create data folder", &probe_root)?;
            tempfile::Builder::new()
                .prefix(".probe")
                .tempfile_in(&probe_root)
                .at("create a file in data folder", &probe_root)?;
            Ok(())
        })
        .await?;
        Ok(FsSink {
            shared: Arc::new(Shared {
                root,
                temp_prefix: format!(".{:08x}-", rand::random::<u32>()),
                recordings: Recordings::default(),
            }),
        })
    }
}

impl Shared {
    fn recording(&self, id: &RecordingId) -> Lease<RecordingDir> {
        self.recordings.lease(id, || RecordingDir {
            path: layout::recording_dir(&self.root, id),
            state: tokio::sync::Mutex::default(),
        })
    }
}

#[async_trait]
impl FrameSink for FsSink {
    async fn open_stream(&self, first: &Frame) -> Result<Box<dyn StreamWriter>, SinkError> {
        let shared = &self.shared;
        let recording = shared.recording(&first.key.recording);
        let folder = recording.prepare(first).await?;
        let dir = layout::stream_dir(&shared.root, &first.key.recording, &folder, first.key.kind);
        let temp_prefix = shared.temp_prefix.clone();
        let files = blocking(move || StreamFiles::open(dir, &temp_prefix)).await?;
        Ok(Box::new(FsStreamWriter {
            recording,
            files: Arc::new(Mutex::new(files)),
        }))
    }

    async fn record_event(&self, event: &ParticipantEvent) -> Result<(), SinkError> {
        let recording = self.shared.recording(&event.recording.id);
        Ok(recording.record_event(event).await?)
    }

    async fn flush(&self) -> Result<(), SinkError> {
        for recording in self.shared.recordings.all() {
            recording
                .state
                .lock()
                .await
                .flush_summary(&recording.path)
                .await?;
        }
        Ok(())
    }
}

/// One recording folder, shared by the streams of that recording that are open.
struct RecordingDir {
    path: PathBuf,
    state: tokio::sync::Mutex<RecordingState>,
}

#[derive(Default)]
struct RecordingState {
    /// Whether what an earlier run left in the folder has been read.
    loaded: bool,
    participants: HashMap<ParticipantId, ParticipantDir>,
    summary: Option<RecordingSummary>,
    /// The summary differs from the `recording.json` on disk.
    dirty: bool,
    written_at: Option<Instant>,
    /// `events.jsonl`, opened at the first event.
    events: Option<Arc<Mutex<EventLog>>>,
}

struct ParticipantDir {
    folder: String,
    /// What `participant.json` holds, if this run wrote it.
    written: Option<Described>,
}

impl RecordingDir {
    /// The recording's state, filled in with what earlier runs left the first time.
    async fn state(&self) -> Result<tokio::sync::MutexGuard<'_, RecordingState>, FsError> {
        let mut state = self.state.lock().await;
        if !state.loaded {
            let path = self.path.clone();
            let (participants, summary) = blocking(move || load_recording(&path)).await?;
            state.participants = participants;
            state.summary = summary;
            state.loaded = true;
        }
        Ok(state)
    }

    /// Readies the recording and participant folders for a stream's first frame, and
    /// returns the participant's folder name.
    async fn prepare(&self, first: &Frame) -> Result<String, FsError> {
        let mut state = self.state().await?;
        let folder = state
            .participant_folder(&self.path, &first.participant)
            .await?;
        state
            .note_participant(&self.path, &first.participant, first.time.relative)
            .await?;
        Ok(folder)
    }

    /// Appends a participant event to `events.jsonl`, and notes what it says of the
    /// participant and the recording.
    async fn record_event(&self, event: &ParticipantEvent) -> Result<(), FsError> {
        let mut state = self.state().await?;
        let participant = &event.participant;
        state.participant_folder(&self.path, participant).await?;
        // Join and update events say who the participant now is. Other events matter here
        // only for a participant this run has not written yet, so that no folder lacks its
        // participant.json.
        let unwritten = state
            .participants
            .get(&participant.id)
            .is_some_and(|dir| dir.written.is_none());
        if event.kind.describes_participant() || unwritten {
            state
                .note_participant(&self.path, participant, event.time.relative)
                .await?;
        }
        let log = state.event_log(&self.path).await?;
        let path = self.path.join(layout::EVENTS_LOG);
        let line = json_line(&EventRecord::from(event), &path)?;
        blocking(move || log.lock().append(&line)).await?;
        let (_, changed) = state.note_recording(&event.recording);
        if changed {
            state.flush_summary(&self.path).await?;
        }
        Ok(())
    }
}

impl RecordingState {
    /// Keeps `participant.json` what Recall last said of the participant, as a frame or
    /// event at meeting time `as_of` describes them.
    async fn note_participant(
        &mut self,
        recording_path: &Path,
        participant: &Participant,
        as_of: f64,
    ) -> Result<(), FsError> {
        if let Some(dir) = self.participants.get_mut(&participant.id)
            && dir
                .written
                .as_mut()
                .is_none_or(|written| written.is_superseded_by(participant, as_of))
        {
            let path = recording_path
                .join(&dir.folder)
                .join(layout::PARTICIPANT_FILE);
            write_json_atomic(path, participant).await?;
            dir.written = Some(Described::new(participant, as_of));
        }
        Ok(())
    }

    /// Notes a saved frame: the participant, the recording's context and its frame times.
    async fn note_frame(&mut self, recording_path: &Path, frame: &Frame) -> Result<(), FsError> {
        let never_written = self.written_at.is_none();
        let (summary, changed) = self.note_recording(&frame.recording);
        let urgent = never_written || changed;
        summary.note_frame_time(frame.time);
        self.dirty = true;
        self.note_participant(recording_path, &frame.participant, frame.time.relative)
            .await?;
        if urgent
            || self
                .written_at
                .is_some_and(|at| at.elapsed() >= SUMMARY_EVERY)
        {
            self.flush_summary(recording_path).await?;
        }
        Ok(())
    }

    async fn flush_summary(&mut self, recording_path: &Path) -> Result<(), FsError> {
        if let (true, Some(summary)) = (self.dirty, &self.summary) {
            write_json_atomic(recording_path.join(layout::RECORDING_FILE), summary).await?;
            self.dirty = false;
            self.written_at = Some(Instant::now());
        }
        Ok(())
    }

    /// The participant's folder name: chosen and created at first sight, whether that is a
    /// frame or an event, and kept from then on.
    async fn participant_folder(
        &mut self,
        recording_path: &Path,
        participant: &Participant,
    ) -> Result<String, FsError> {
        if let Some(dir) = self.participants.get(&participant.id) {
            return Ok(dir.folder.clone());
        }
        let folder = layout::participant_folder_name(participant);
        let path = recording_path.join(&folder);
        blocking(move || fs::create_dir_all(&path).at("create folder", &path)).await?;
        self.participants.insert(
            participant.id,
            ParticipantDir {
                folder: folder.clone(),
                written: None,
            },
        );
        Ok(folder)
    }

    /// The open `events.jsonl`, opened (and repaired) the first time.
    async fn event_log(&mut self, recording_path: &Path) -> Result<Arc<Mutex<EventLog>>, FsError> {
        if let Some(log) = &self.events {
            return Ok(log.clone());
        }
        let path = recording_path.join(layout::EVENTS_LOG);
        let log = Arc::new(Mutex::new(blocking(move || EventLog::open(path)).await?));
        self.events = Some(log.clone());
        Ok(log)
    }

    /// Takes in the recording-level context an event carries (metadata, bot, endpoint...),
    /// and says whether the summary changed.
    fn note_recording(&mut self, info: &RecordingInfo) -> (&mut RecordingSummary, bool) {
        let (summary, changed) = RecordingSummary::note(&mut self.summary, info);
        self.dirty |= changed;
        (summary, changed)
    }
}

/// Reads what earlier runs left in a recording folder: participant folders by id, and the
/// summary (whose first frame time must survive a restart).
fn load_recording(
    path: &Path,
) -> Result<
    (
        HashMap<ParticipantId, ParticipantDir>,
        Option<RecordingSummary>,
    ),
    FsError,
> {
    fs::create_dir_all(path).at("create folder", path)?;
    let mut participants = HashMap::new();
    let mut names: Vec<String> = fs::read_dir(path)
        .at("list", path)?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    // Summaries are only written under the recording's lock, and this runs under it before
    // any: a temporary file here or in a participant folder is a crash's leftover.
    remove_leftover_temp_files(path, &names)?;
    for name in names {
        if let Some(id) = layout::parse_participant_folder_name(&name)
            && path.join(&name).is_dir()
        {
            let folder = path.join(&name);
            let inside: Vec<String> = fs::read_dir(&folder)
                .at("list", &folder)?
                .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .collect();
            remove_leftover_temp_files(&folder, &inside)?;
            participants.entry(id).or_insert(ParticipantDir {
                folder: name,
                written: None,
            });
        }
    }
    let summary_path = path.join(layout::RECORDING_FILE);
    let summary = match fs::read(&summary_path) {
        Ok(json) => serde_json::from_slice(&json)
            .inspect_err(|error| {
                tracing::warn!(path = %summary_path.display(), %error, "unreadable recording summary; starting a new one");
            })
            .ok(),
        Err(error) if error.kind() == io::ErrorKind::NotFound => None,
        Err(error) => return Err(error).at("read", &summary_path),
    };
    Ok((participants, summary))
}

/// Removes the temporary files of atomic writes, named `.<random>.tmp`, from `names` in `dir`.
fn remove_leftover_temp_files(dir: &Path, names: &[String]) -> Result<(), FsError> {
    for name in names {
        if name.starts_with('.') && name.ends_with(TEMP_SUFFIX) {
            let path = dir.join(name);
            fs::remove_file(&path).at("remove leftover temporary file", &path)?;
            tracing::info!(path = %path.display(), "removed a temporary file left by an earlier run");
        }
    }
    Ok(())
}

/// The open files of one stream folder, used from blocking tasks only.
struct StreamFiles {
    dir: PathBuf,
    manifest_path: PathBuf,
    manifest: File,
    /// Length of the manifest up to its last complete line.
    manifest_len: u64,
    /// Milliseconds that already have a frame file.
    saved: HashSet<u64>,
    temp_prefix: String,
}

impl StreamFiles {
    /// Opens a stream folder, repairing what a crash may have left: temporary files of
    /// earlier runs are removed, a torn last manifest line is cut off, and frames without
    /// a manifest line get one rebuilt from the file.
    fn open(dir: PathBuf, temp_prefix: &str) -> Result<Self, FsError> {
        fs::create_dir_all(&dir).at("create folder", &dir)?;
        let mut on_disk = Vec::new();
        for entry in fs::read_dir(&dir).at("list", &dir)? {
            let entry = entry.at("list", &dir)?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if let Some(ms) = layout::parse_frame_file_name(&name) {
                on_disk.push(ms);
            } else if name.starts_with('.')
                && name.ends_with(TEMP_SUFFIX)
                && !name.starts_with(temp_prefix)
            {
                let path = entry.path();
                fs::remove_file(&path).at("remove leftover temporary file", &path)?;
                tracing::info!(path = %path.display(), "removed a temporary file left by an earlier run");
            }
        }
        on_disk.sort_unstable();

        let manifest_path = dir.join(layout::FRAMES_MANIFEST);
        let (listed, manifest_len) = repair_manifest(&manifest_path)?;
        let manifest = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&manifest_path)
            .at("open", &manifest_path)?;
        let mut files = StreamFiles {
            dir,
            manifest_path,
            manifest,
            manifest_len,
            saved: on_disk.iter().copied().collect(),
            temp_prefix: temp_prefix.to_owned(),
        };
        for ms in on_disk.into_iter().filter(|ms| !listed.contains(ms)) {
            match recovered_record(&files.dir, ms) {
                Ok(record) => {
                    files.append(&record)?;
                    tracing::info!(dir = %files.dir.display(), file = record.file, "rebuilt a missing manifest line");
                }
                Err(error) => {
                    tracing::warn!(%error, "frame file without a manifest line is unreadable; left as it is")
                }
            }
        }
        Ok(files)
    }

    /// Saves one frame: the PNG under its final name, then its manifest line.
    fn write(
        &mut self,
        relative_ms: u64,
        png: &[u8],
        record: &FrameRecord,
    ) -> Result<WriteOutcome, FsError> {
        if self.saved.contains(&relative_ms) {
            return Ok(WriteOutcome::Duplicate);
        }
        let path = self.dir.join(&record.file);
        let mut temp = tempfile::Builder::new()
            .prefix(&self.temp_prefix)
            .suffix(TEMP_SUFFIX)
            .tempfile_in(&self.dir)
            .at("create a temporary file in", &self.dir)?;
        temp.write_all(png).at("write", temp.path())?;
        // On failure the temporary file is dropped, which removes it.
        match temp.persist_noclobber(&path) {
            Ok(_) => {}
            Err(error) if error.error.kind() == io::ErrorKind::AlreadyExists => {
                self.saved.insert(relative_ms);
                return Ok(WriteOutcome::Duplicate);
            }
            Err(error) => return Err(error.error).at("move into place", &path),
        }
        self.saved.insert(relative_ms);
        self.append(record)?;
        Ok(WriteOutcome::Saved {
            bytes: png.len() as u64,
        })
    }

    /// Appends a manifest line; on failure cuts off whatever part of it was written.
    fn append(&mut self, record: &FrameRecord) -> Result<(), FsError> {
        let line = json_line(record, &self.manifest_path)?;
        append_line(
            &mut self.manifest,
            &mut self.manifest_len,
            &self.manifest_path,
            &line,
        )
    }
}

/// `value` as one line of a JSON-lines file, newline included.
fn json_line(value: &impl Serialize, path: &Path) -> Result<Vec<u8>, FsError> {
    let mut line = serde_json::to_vec(value)
        .map_err(io::Error::from)
        .at("encode", path)?;
    line.push(b'\n');
    Ok(line)
}

/// Appends a whole line to a file opened for appending, whose complete lines end at `len`.
/// On failure cuts off whatever part of the line was written, so that the lines before it
/// stay intact and the next append starts on a line of its own.
fn append_line(file: &mut File, len: &mut u64, path: &Path, line: &[u8]) -> Result<(), FsError> {
    match file.write_all(line) {
        Ok(()) => {
            *len += line.len() as u64;
            Ok(())
        }
        Err(error) => {
            if let Err(cut) = file.set_len(*len) {
                tracing::error!(path = %path.display(), error = %cut, "cannot cut a partly written line");
            }
            Err(error).at("append to", path)
        }
    }
}

/// A recording's `events.jsonl`, open for appending; used from blocking tasks only.
struct EventLog {
    path: PathBuf,
    file: File,
    /// Length of the log up to its last complete line.
    len: u64,
}

impl EventLog {
    /// Opens the log, first cutting off a torn last line that a crash may have left.
    fn open(path: PathBuf) -> Result<Self, FsError> {
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .at("open", &path)?;
        let size = file.metadata().at("read the size of", &path)?.len();
        let len = complete_lines_len(&file, size).at("read", &path)?;
        if len < size {
            file.set_len(len).at("cut the torn last line of", &path)?;
            tracing::warn!(path = %path.display(), bytes = size - len, "cut a torn last event line");
        }
        Ok(EventLog { path, file, len })
    }

    fn append(&mut self, line: &[u8]) -> Result<(), FsError> {
        append_line(&mut self.file, &mut self.len, &self.path, line)
    }
}

/// The length of the first `size` bytes of `file` up to the end of their last complete line,
/// read backwards from the end: one small read when the file ends with a newline.
fn complete_lines_len(file: &File, size: u64) -> io::Result<u64> {
    use std::os::unix::fs::FileExt as _;
    let mut buffer = [0u8; 8192];
    let mut end = size;
    while end > 0 {
        let start = end.saturating_sub(buffer.len() as u64);
        let chunk = &mut buffer[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(newline) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + newline as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Cuts a torn last line off a manifest and returns the frames it lists and its length.
fn repair_manifest(path: &Path) -> Result<(HashSet<u64>, u64), FsError> {
    let text = match fs::read(path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok((HashSet::new(), 0)),
        Err(error) => return Err(error).at("read", path),
    };
    let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if complete < text.len() {
        let file = OpenOptions::new().write(true).open(path).at("open", path)?;
        file.set_len(complete as u64)
            .at("cut the torn last line of", path)?;
        tracing::warn!(path = %path.display(), bytes = text.len() - complete, "cut a torn last manifest line");
    }
    let mut listed = HashSet::new();
    for line in text[..complete]
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
    {
        match serde_json::from_slice::<FrameRecord>(line) {
            Ok(record) => listed.extend(layout::parse_frame_file_name(&record.file)),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "skipping an unreadable manifest line")
            }
        }
    }
    Ok((listed, complete as u64))
}

/// A manifest line rebuilt from a frame file alone; the absolute time is lost.
fn recovered_record(dir: &Path, relative_ms: u64) -> Result<FrameRecord, FsError> {
    let file = layout::frame_file_name(relative_ms);
    let path = dir.join(&file);
    let png = fs::read(&path).at("read", &path)?;
    let (width, height) = crate::event::png_dimensions(&png)
        .map_err(|refusal| io::Error::new(io::ErrorKind::InvalidData, refusal))
        .at("read the PNG header of", &path)?;
    let modified = fs::metadata(&path)
        .and_then(|m| m.modified())
        .at("read the time of", &path)?;
    Ok(FrameRecord {
        file,
        relative: relative_ms as f64 / 1000.0,
        absolute: None,
        width,
        height,
        bytes: png.len() as u64,
        received_at: Timestamp::try_from(modified).unwrap_or(Timestamp::UNIX_EPOCH),
        recovered: true,
    })
}

struct FsStreamWriter {
    recording: Lease<RecordingDir>,
    files: Arc<Mutex<StreamFiles>>,
}

#[async_trait]
impl StreamWriter for FsStreamWriter {
    async fn write(&mut self, frame: &Frame) -> Result<WriteOutcome, SinkError> {
        let record = FrameRecord::of(frame);
        let (files, ms, png): (_, _, Bytes) =
            (self.files.clone(), frame.relative_ms, frame.png.clone());
        let outcome = blocking(move || files.lock().write(ms, &png, &record)).await?;
        if let WriteOutcome::Saved { .. } = outcome {
            self.recording
                .state
                .lock()
                .await
                .note_frame(&self.recording.path, frame)
                .await?;
        }
        Ok(outcome)
    }

    async fn close(self: Box<Self>) -> Result<(), SinkError> {
        let recording = &self.recording;
        let mut state = recording.state.lock().await;
        Ok(state.flush_summary(&recording.path).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with(contents: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(layout::EVENTS_LOG);
        fs::write(&path, contents).unwrap();
        (dir, path)
    }

    #[test]
    fn write_errors_are_counted_by_kind() {
        let kind = |kind: io::ErrorKind| {
            FsError::Io {
                action: "write",
                path: PathBuf::from("/data/x"),
                source: io::Error::from(kind),
            }
            .kind()
        };
        assert_eq!(kind(io::ErrorKind::StorageFull), "no_space");
        assert_eq!(kind(io::ErrorKind::ReadOnlyFilesystem), "permission_denied");
        assert_eq!(kind(io::ErrorKind::NotADirectory), "not_found");
        assert_eq!(kind(io::ErrorKind::Interrupted), "io");
    }

    #[test]
    fn complete_lines_end_at_the_last_newline_however_far_back() {
        let mut contents = b"{\"a\":1}\n".to_vec();
        let complete = contents.len() as u64;
        // A torn line longer than one backwards read.
        contents.extend(std::iter::repeat_n(b'x', 20_000));
        let (_dir, path) = log_with(&contents);
        let file = File::open(&path).unwrap();
        assert_eq!(
            complete_lines_len(&file, contents.len() as u64).unwrap(),
            complete
        );
        assert_eq!(complete_lines_len(&file, complete).unwrap(), complete);
        assert_eq!(complete_lines_len(&file, 3).unwrap(), 0);
    }

    #[test]
    fn an_event_log_cuts_a_torn_line_then_appends_whole_lines() {
        let (_dir, path) = log_with(b"{\"n\":1}\n{\"n\":2}\n{\"n\":");
        let mut log = EventLog::open(path.clone()).unwrap();
        log.append(b"{\"n\":3}\n").unwrap();
        assert_eq!(
            fs::read(&path).unwrap(),
            b"{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n"
        );
        assert_eq!(log.len, fs::metadata(&path).unwrap().len());

        let (_dir, path) = log_with(b"no newline at all");
        EventLog::open(path.clone()).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"");
    }
}
