//! Deleting a recording, or one participant of it, written once above the [`Store`] for
//! every backend: what the API's `DELETE`, `recall-frames delete` and retention all call.
//!
//! A deletion is all or nothing for a reader:
//!
//! 1. a pending marker is written (`.deletions/pending/<recording>/...`), then the tombstone
//!    (`.deletions/deleted/<recording>/...`, kept for good). Either hides the recording from
//!    every read at once, through the [`GuardedStore`] the catalog and recorder use, and
//!    refuses what arrives for it later (`deleted`, at the websocket);
//! 2. the bytes go, with the store's prefix delete;
//! 3. the pending marker goes, and a line is added to the audit log
//!    (`.deletions/audit.jsonl`) and to the structured log.
//!
//! A crash anywhere after 1 leaves the pending marker, and the next start finishes the
//! deletion; a crash before 1 deleted nothing. Tombstones are read back at start, and again
//! at every storage check, so that servers sharing a bucket learn of each other's deletions
//! (and sweep again what a write racing a deletion may have left).
//!
//! ```text
//! .deletions/pending/<recording>/recording.json        a recording being deleted
//! .deletions/pending/<recording>/<participant>.json    a participant folder being deleted
//! .deletions/deleted/<recording>/...                   the same, for good: the tombstones
//! .deletions/audit.jsonl                               one line per deletion done
//! ```

pub mod command;
mod guard;

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use jiff::Timestamp;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

pub use self::guard::GuardedStore;
use crate::frame::{ParticipantId, RecordingId};
use crate::layout;
use crate::store::{Key, LogWriter, Removed, Store, StoreError};

/// The server's own folder of deletion records: a dot-folder, never a recording.
pub const DELETIONS_FOLDER: &str = ".deletions";
const PENDING: &str = "pending";
const DELETED: &str = "deleted";
/// The tombstone of a whole recording, in its folder under `pending/` and `deleted/`.
const RECORDING_MARK: &str = "recording.json";
/// The audit log of deletions.
pub const AUDIT_LOG: &str = "audit.jsonl";
/// Lines per part of the audit log where logs are split into parts.
const AUDIT_PER_PART: usize = 1000;

/// Who asked for a deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeletedBy {
    /// `DELETE /api/recordings/...`.
    Api,
    /// `recall-frames delete`.
    Cli,
    /// `RETENTION`.
    Retention,
}

impl DeletedBy {
    pub const ALL: [DeletedBy; 3] = [DeletedBy::Api, DeletedBy::Cli, DeletedBy::Retention];

    pub fn as_str(self) -> &'static str {
        match self {
            DeletedBy::Api => "api",
            DeletedBy::Cli => "cli",
            DeletedBy::Retention => "retention",
        }
    }
}

/// What is deleted: a recording, or one participant's folder in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Recording(RecordingId),
    Participant {
        recording: RecordingId,
        participant: ParticipantId,
        /// The participant's folder, as the store names it.
        folder: String,
    },
}

impl Target {
    pub fn recording(&self) -> &RecordingId {
        match self {
            Target::Recording(recording) | Target::Participant { recording, .. } => recording,
        }
    }

    /// The prefix whose objects go.
    fn prefix(&self) -> Key {
        match self {
            Target::Recording(recording) => layout::recording_key(recording),
            Target::Participant {
                recording, folder, ..
            } => layout::recording_key(recording).join(folder),
        }
    }

    /// The name of its marker in the recording's folder under `pending/` and `deleted/`.
    fn mark_name(&self) -> String {
        match self {
            Target::Recording(_) => RECORDING_MARK.to_owned(),
            Target::Participant { folder, .. } => format!("{folder}.json"),
        }
    }

    fn mark(&self, state: &str) -> Key {
        Key::of([DELETIONS_FOLDER, state, self.recording().as_str()]).join(&self.mark_name())
    }

    /// The target a marker's key names, from a listing of `.deletions/<state>/`.
    fn from_mark(parts: &[&str]) -> Option<Target> {
        let [recording, name] = parts else {
            return None;
        };
        let recording = RecordingId::parse(recording)?;
        if *name == RECORDING_MARK {
            return Some(Target::Recording(recording));
        }
        let folder = name.strip_suffix(".json")?;
        let participant = layout::parse_participant_folder_name(folder)?;
        Some(Target::Participant {
            recording,
            participant,
            folder: folder.to_owned(),
        })
    }
}

/// A pending marker's and a tombstone's contents: who asked, when.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Mark {
    by: DeletedBy,
    requested_at: Timestamp,
}

/// One line of the audit log, and what a deletion reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deleted {
    pub at: Timestamp,
    pub by: DeletedBy,
    pub recording: RecordingId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant: Option<ParticipantId>,
    /// Objects (files) removed.
    pub objects: u64,
    /// Bytes freed.
    pub bytes: u64,
    /// Set when a restart (or another server) finished a deletion that was cut short.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub finished_later: bool,
    /// Recall's answer, when its copy was asked to be deleted too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recall: Option<serde_json::Value>,
}

/// What the tombstones hide: read on every write and read of the recorder and the catalog,
/// changed only by deletions.
#[derive(Default)]
pub struct Hidden {
    sets: RwLock<HiddenSets>,
    /// Held for reading by every write through the [`GuardedStore`], for writing while a
    /// tombstone is set.
    gate: tokio::sync::RwLock<()>,
}

#[derive(Default)]
struct HiddenSets {
    recordings: HashSet<String>,
    folders: HashSet<(String, String)>,
    participants: HashSet<(String, ParticipantId)>,
}

impl Hidden {
    /// Whether `key` is under a deleted recording or participant folder.
    pub fn covers(&self, key: &Key) -> bool {
        let mut segments = key.segments();
        let Some(recording) = segments.next() else {
            return false;
        };
        let sets = self.sets.read();
        if sets.recordings.contains(recording) {
            return true;
        }
        match segments.next() {
            Some(folder) if !sets.folders.is_empty() => sets
                .folders
                .contains(&(recording.to_owned(), folder.to_owned())),
            _ => false,
        }
    }

    /// Whether the recording, or the participant in it, is deleted.
    pub fn is_deleted(&self, recording: &RecordingId, participant: Option<ParticipantId>) -> bool {
        let sets = self.sets.read();
        // Checked for every message: no allocation unless a participant was ever deleted.
        sets.recordings.contains(recording.as_str())
            || (!sets.participants.is_empty()
                && participant.is_some_and(|participant| {
                    sets.participants
                        .contains(&(recording.as_str().to_owned(), participant))
                }))
    }

    /// Hides `target`; true when it was not hidden yet.
    fn insert(&self, target: &Target) -> bool {
        let mut sets = self.sets.write();
        match target {
            Target::Recording(recording) => sets.recordings.insert(recording.as_str().to_owned()),
            Target::Participant {
                recording,
                participant,
                folder,
            } => {
                let recording = recording.as_str().to_owned();
                sets.participants.insert((recording.clone(), *participant));
                sets.folders.insert((recording, folder.clone()))
            }
        }
    }

    fn contains(&self, target: &Target) -> bool {
        let sets = self.sets.read();
        match target {
            Target::Recording(recording) => sets.recordings.contains(recording.as_str()),
            Target::Participant {
                recording, folder, ..
            } => {
                sets.recordings.contains(recording.as_str())
                    || sets
                        .folders
                        .contains(&(recording.as_str().to_owned(), folder.clone()))
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeletionError {
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Deletes recordings and participants from one store, and knows which are deleted.
pub struct Deletions {
    /// The byte store itself, not the guarded one: deletions see what they remove.
    store: Arc<dyn Store>,
    hidden: Arc<Hidden>,
    /// One deletion at a time, holding the audit log's writer.
    audit: tokio::sync::Mutex<Box<dyn LogWriter>>,
    /// The tombstones were read once: those seen from then on are other writers' news.
    loaded: std::sync::atomic::AtomicBool,
}

impl Deletions {
    /// The deletions of `store`, with every tombstone and pending deletion in it hidden.
    pub async fn load(store: Arc<dyn Store>) -> Result<Arc<Self>, StoreError> {
        let deletions = Deletions::unread(store);
        deletions.refresh().await?;
        Ok(deletions)
    }

    /// The deletions of `store` before its tombstones are read ([`Deletions::refresh`]):
    /// for a server that starts while its bucket does not answer.
    pub fn unread(store: Arc<dyn Store>) -> Arc<Self> {
        let audit = store.log_writer(&audit_key(), AUDIT_PER_PART);
        Arc::new(Deletions {
            store,
            hidden: Arc::default(),
            audit: tokio::sync::Mutex::new(audit),
            loaded: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The store the recorder and the catalog use: `store` with what is deleted hidden.
    pub fn guarded(&self) -> Arc<dyn Store> {
        Arc::new(GuardedStore::new(self.store.clone(), self.hidden.clone()))
    }

    pub fn is_deleted(&self, recording: &RecordingId, participant: Option<ParticipantId>) -> bool {
        self.hidden.is_deleted(recording, participant)
    }

    /// Reads the tombstones and pending deletions (at start, then again for another
    /// server's or `recall-frames delete`'s) and hides those new to this server. After the
    /// first read, a tombstone new to this server has its prefix swept again: a write that
    /// raced the deletion here lands nowhere visible, and is removed. Returns the pending
    /// deletions, to be finished with [`Deletions::finish_pending`].
    pub async fn refresh(&self) -> Result<Vec<Target>, StoreError> {
        let deleted = self.marks(DELETED).await?;
        let pending = self.marks(PENDING).await?;
        let mut newly = Vec::new();
        for target in deleted.iter().chain(&pending) {
            if self.hide(target).await {
                newly.push(target.clone());
            }
        }
        // The first read only hides: sweeping every tombstone at each start would cost a
        // listing per deletion ever made.
        let loaded = self.loaded.swap(true, std::sync::atomic::Ordering::Relaxed);
        if loaded {
            for target in newly.iter().filter(|target| !pending.contains(target)) {
                self.store.delete_prefix(&target.prefix()).await?;
            }
        }
        Ok(pending)
    }

    /// Finishes the deletions a crash (or a failed request) cut short.
    pub async fn finish_pending(&self, pending: Vec<Target>) -> Vec<Deleted> {
        let mut finished = Vec::new();
        for target in pending {
            // Under the lock, so that a deletion under way here is not finished twice: once
            // it is done, its marker is gone.
            let mut audit = self.audit.lock().await;
            let by = match self.store.get(&target.mark(PENDING)).await {
                Ok(Some(found)) => serde_json::from_slice::<Mark>(&found.bytes)
                    .map_or(DeletedBy::Api, |mark| mark.by),
                Ok(None) => continue,
                Err(error) => {
                    tracing::warn!(%error, recording = %target.recording(), "cannot read a pending deletion; trying again later");
                    continue;
                }
            };
            match self.remove(&mut audit, &target, by, true, None).await {
                Ok(deleted) => finished.push(deleted),
                Err(error) => {
                    tracing::warn!(%error, recording = %target.recording(), "cannot finish a deletion; trying again later");
                }
            }
        }
        finished
    }

    /// Deletes `target`: hidden at once, its bytes removed, the tombstone kept, the audit
    /// line written. `recall`, Recall's answer when its copy was deleted too, goes in the
    /// audit line.
    pub async fn delete(
        &self,
        target: &Target,
        by: DeletedBy,
        recall: Option<serde_json::Value>,
    ) -> Result<Deleted, DeletionError> {
        // Held from the check to the audit line: a second request for the same target
        // finds it deleted.
        let mut audit = self.audit.lock().await;
        if self.hidden.contains(target) {
            return Err(DeletionError::NotFound);
        }
        let mark = Mark {
            by,
            requested_at: Timestamp::now(),
        };
        let body = Bytes::from(serde_json::to_vec(&mark).expect("a mark is plain JSON"));
        // Pending first: a crash after it is finished at the next start; the tombstone
        // then hides the target for good.
        self.store.put(&target.mark(PENDING), body.clone()).await?;
        self.store.put(&target.mark(DELETED), body).await?;
        self.hide(target).await;
        Ok(self.remove(&mut audit, target, by, false, recall).await?)
    }

    /// Hides `target`, once every write that passed the check before has landed.
    async fn hide(&self, target: &Target) -> bool {
        let _gate = self.hidden.gate.write().await;
        self.hidden.insert(target)
    }

    /// Removes `target`'s bytes, then its pending marker, and writes the audit line.
    async fn remove(
        &self,
        audit: &mut Box<dyn LogWriter>,
        target: &Target,
        by: DeletedBy,
        finished_later: bool,
        recall: Option<serde_json::Value>,
    ) -> Result<Deleted, StoreError> {
        // The tombstone again: a deletion finished after a crash between the two marks.
        if finished_later {
            let mark = Mark {
                by,
                requested_at: Timestamp::now(),
            };
            let body = Bytes::from(serde_json::to_vec(&mark).expect("a mark is plain JSON"));
            if self.store.get(&target.mark(DELETED)).await?.is_none() {
                self.store.put(&target.mark(DELETED), body).await?;
            }
        }
        let mut removed = self.store.delete_prefix(&target.prefix()).await?;
        let participant = match target {
            Target::Recording(_) => None,
            Target::Participant {
                recording,
                participant,
                ..
            } => {
                self.store
                    .delete(&layout::claim_key(recording, *participant))
                    .await?;
                let events = self.forget_events(recording, *participant).await?;
                removed.bytes += events.bytes;
                Some(*participant)
            }
        };
        self.store.delete(&target.mark(PENDING)).await?;
        let deleted = Deleted {
            at: Timestamp::now(),
            by,
            recording: target.recording().clone(),
            participant,
            objects: removed.objects,
            bytes: removed.bytes,
            finished_later,
            recall,
        };
        audit.push(json_line(&deleted));
        if let Err(error) = audit.flush().await {
            // The deletion is done; its line is kept for the next flush.
            tracing::error!(%error, "could not write the deletion to the audit log");
        }
        tracing::info!(
            by = by.as_str(),
            recording = %deleted.recording,
            participant = participant.map(|p| p.0),
            objects = deleted.objects,
            bytes = deleted.bytes,
            finished_later,
            "deleted"
        );
        Ok(deleted)
    }

    /// Removes a deleted participant's lines from the recording's event log, part by part:
    /// what they said in the chat, when they joined. Returns the bytes that went.
    async fn forget_events(
        &self,
        recording: &RecordingId,
        participant: ParticipantId,
    ) -> Result<Removed, StoreError> {
        let log = layout::recording_key(recording).join(layout::EVENTS_LOG);
        let mut removed = Removed::default();
        for part in self.store.log_parts(&log).await? {
            let Some(found) = self.store.get(&part.key).await? else {
                continue;
            };
            let mut kept = Vec::with_capacity(found.bytes.len());
            for line in crate::store::complete_lines(&found.bytes) {
                let theirs = serde_json::from_slice::<layout::EventRecord>(line)
                    .is_ok_and(|event| event.participant.id == participant);
                if theirs {
                    removed.objects += 1;
                    removed.bytes += line.len() as u64 + 1;
                } else {
                    kept.extend_from_slice(line);
                    kept.push(b'\n');
                }
            }
            if kept.len() < found.bytes.len() {
                self.store.put(&part.key, Bytes::from(kept)).await?;
            }
        }
        Ok(removed)
    }

    /// The targets marked under `.deletions/<state>/`.
    async fn marks(&self, state: &str) -> Result<Vec<Target>, StoreError> {
        let folder = Key::of([DELETIONS_FOLDER, state]);
        let listed = self.store.list(&folder).await?;
        Ok(listed
            .iter()
            .filter_map(|object| Target::from_mark(&object.key.strip_prefix(&folder)?))
            .collect())
    }

    /// Every line of the audit log.
    #[cfg(test)]
    pub async fn audit_log(&self) -> Result<Vec<Deleted>, StoreError> {
        let lines = crate::store::read_whole_log(self.store.as_ref(), &audit_key()).await?;
        Ok(lines
            .iter()
            .filter_map(|line| serde_json::from_slice(line).ok())
            .collect())
    }
}

/// Copies the tombstones of `from` into `to` (those not there yet), so that what was
/// deleted in one store stays refused in the other: `recall-frames copy-to-bucket`.
pub async fn copy_tombstones(from: &dyn Store, to: &dyn Store) -> Result<usize, StoreError> {
    let mut copied = 0;
    for object in from.list(&Key::of([DELETIONS_FOLDER, DELETED])).await? {
        if let Some(found) = from.get(&object.key).await?
            && to.create(&object.key, found.bytes).await? == crate::store::Created::New
        {
            copied += 1;
        }
    }
    Ok(copied)
}

fn audit_key() -> Key {
    Key::of([DELETIONS_FOLDER, AUDIT_LOG])
}

fn json_line(value: &impl Serialize) -> Vec<u8> {
    let mut line = serde_json::to_vec(value).expect("an audit line is plain JSON");
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    fn id(text: &str) -> RecordingId {
        RecordingId::parse(text).unwrap()
    }

    async fn with_recording(store: &MemoryStore) {
        for (key, bytes) in [
            ("rec/100-alice/webcam/000000500.png", "png-a"),
            ("rec/100-alice/participant.json", "{}"),
            ("rec/200-bob/webcam/000000500.png", "png-b"),
            ("rec/recording.json", "{}"),
            ("other/200/webcam/000000500.png", "png-o"),
        ] {
            store
                .put(
                    &Key::parse(key).unwrap(),
                    Bytes::from_static(bytes.as_bytes()),
                )
                .await
                .unwrap();
        }
        let alice = r#"{"event":"participant_events.chat_message","participant":{"id":100,"name":"Alice","is_host":false,"platform":null,"extra_data":null},"timestamp":{"relative":1.0,"absolute":null},"data":{"text":"hi"},"received_at":"2026-11-21T10:00:00Z"}"#;
        let bob = alice.replace("\"id\":100", "\"id\":200");
        store.append_raw(
            &Key::parse("rec/events.jsonl").unwrap(),
            format!("{alice}\n{bob}\n").as_bytes(),
        );
    }

    #[tokio::test]
    async fn a_recording_is_hidden_removed_and_tombstoned_and_writes_to_it_land_nowhere() {
        let store = MemoryStore::default();
        with_recording(&store).await;
        let deletions = Deletions::load(Arc::new(store.clone())).await.unwrap();
        let guarded = deletions.guarded();
        let target = Target::Recording(id("rec"));
        let deleted = deletions
            .delete(&target, DeletedBy::Api, None)
            .await
            .unwrap();
        assert_eq!(deleted.objects, 5);
        assert!(
            deleted.bytes > 14,
            "the frames, summaries and the event log"
        );
        assert!(
            store
                .keys()
                .iter()
                .all(|key| !key.as_str().starts_with("rec/"))
        );
        assert!(deletions.is_deleted(&id("rec"), None));
        assert!(!deletions.is_deleted(&id("other"), None));
        // A frame that was queued lands nowhere.
        let late = Key::parse("rec/100-alice/webcam/000001000.png").unwrap();
        guarded
            .create(&late, Bytes::from_static(b"late"))
            .await
            .unwrap();
        assert_eq!(store.bytes(&late), None);
        // The server's own dot-folder stays, for the catalog to pass over.
        assert_eq!(
            guarded.list_folders(&Key::root()).await.unwrap(),
            [DELETIONS_FOLDER, "other"]
        );
        // Twice is not found; a server started later knows it too.
        assert!(matches!(
            deletions.delete(&target, DeletedBy::Api, None).await,
            Err(DeletionError::NotFound)
        ));
        let again = Deletions::load(Arc::new(store.clone())).await.unwrap();
        assert!(again.is_deleted(&id("rec"), None));
        let audit = again.audit_log().await.unwrap();
        assert_eq!(audit.len(), 1);
        assert_eq!(audit[0].recording, id("rec"));
    }

    #[tokio::test]
    async fn a_participant_goes_with_their_events_and_the_others_stay() {
        let store = MemoryStore::default();
        with_recording(&store).await;
        let deletions = Deletions::load(Arc::new(store.clone())).await.unwrap();
        let target = Target::Participant {
            recording: id("rec"),
            participant: ParticipantId(100),
            folder: "100-alice".into(),
        };
        deletions
            .delete(&target, DeletedBy::Cli, None)
            .await
            .unwrap();
        let keys: Vec<String> = store.keys().iter().map(|k| k.to_string()).collect();
        assert!(
            keys.iter().all(|key| !key.starts_with("rec/100-alice")),
            "{keys:?}"
        );
        assert!(keys.contains(&"rec/200-bob/webcam/000000500.png".to_owned()));
        let events = String::from_utf8(
            store
                .bytes(&Key::parse("rec/events.jsonl").unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(events.lines().count(), 1);
        assert!(events.contains("\"id\":200"));
        assert!(deletions.is_deleted(&id("rec"), Some(ParticipantId(100))));
        assert!(!deletions.is_deleted(&id("rec"), Some(ParticipantId(200))));
        assert_eq!(
            deletions
                .guarded()
                .list_folders(&Key::of(["rec"]))
                .await
                .unwrap(),
            ["200-bob"]
        );
    }

    #[tokio::test]
    async fn a_deletion_cut_short_is_finished_by_the_next_load() {
        let store = MemoryStore::default();
        with_recording(&store).await;
        let target = Target::Recording(id("rec"));
        // A crash right after the pending marker: nothing else happened.
        store
            .put(
                &target.mark(PENDING),
                Bytes::from(
                    serde_json::to_vec(&Mark {
                        by: DeletedBy::Retention,
                        requested_at: Timestamp::now(),
                    })
                    .unwrap(),
                ),
            )
            .await
            .unwrap();
        let deletions = Deletions::load(Arc::new(store.clone())).await.unwrap();
        assert!(
            deletions.is_deleted(&id("rec"), None),
            "hidden from the start"
        );
        let pending = deletions.refresh().await.unwrap();
        assert_eq!(pending, vec![target.clone()]);
        let finished = deletions.finish_pending(pending).await;
        assert_eq!(finished.len(), 1);
        assert!(finished[0].finished_later);
        assert_eq!(finished[0].by, DeletedBy::Retention);
        assert!(
            store
                .keys()
                .iter()
                .all(|key| !key.as_str().starts_with("rec/"))
        );
        assert!(store.bytes(&target.mark(DELETED)).is_some());
        assert!(store.bytes(&target.mark(PENDING)).is_none());
        assert!(deletions.refresh().await.unwrap().is_empty());
    }
}
