//! What the server fetched from Recall after the call, copied as it is: each participant's
//! parts with their manifest lines (the same `fetched_at`, hashes...), the recording's fetch
//! statuses (and `recording.json`), and the bots' status logs. Nothing goes through a sink:
//! these files are only ever created whole, so each is created in the bucket from
//! DATA_DIR's, never replacing one there.

use std::collections::HashSet;

use crate::catalog::{ParticipantDetail, RecordingDetail};
use crate::frame::RecordingId;
use crate::layout;
use crate::recall::BotId;
use crate::recall::media::MediaKind;
use crate::recall_media::{
    BOTS_FOLDER, MEDIA_MANIFEST, MediaRecord, append_line, bot_status, bot_status_key,
    is_media_file_name, media_records, participant_folder, participant_media_key, status_key,
};
use crate::store::{Created, Key, Store};

use super::{RecordingCopied, Source};

/// Copies a recording's `recording.json` and fetch statuses where the bucket has none (a
/// status a server on the bucket wrote since is newer, and stays), and each participant's
/// parts.
pub(super) async fn copy_recall_media(
    from: &Source,
    to: &dyn Store,
    detail: &RecordingDetail,
    copied: &mut RecordingCopied,
) -> anyhow::Result<()> {
    let id = &detail.overview.id;
    let recording = layout::recording_key(id);
    // A recording that only Recall's media filled sends nothing through the sink, which
    // writes `recording.json` otherwise: without it a server lists the recording only if it
    // has a participant. DATA_DIR's goes along unless the bucket has one; the sink merges
    // its own into it.
    let statuses = MediaKind::ALL.map(|kind| status_key(id, kind));
    for key in std::iter::once(recording.join(layout::RECORDING_FILE)).chain(statuses) {
        if let Some(found) = from.store.get(&key).await? {
            to.create(&key, found.bytes).await?;
        }
    }
    for participant in &detail.participants {
        copy_parts(from, to, id, participant, copied).await?;
    }
    Ok(())
}

/// Copies the parts a participant's manifest in DATA_DIR lists and the bucket's does not,
/// each streamed from its file, into the folder the bucket's recorder uses for the
/// participant; then adds its line. A part whose file an earlier copy stored before it
/// could add the line is kept as it is, and listed.
async fn copy_parts(
    from: &Source,
    to: &dyn Store,
    id: &RecordingId,
    participant: &ParticipantDetail,
    copied: &mut RecordingCopied,
) -> anyhow::Result<()> {
    let parts = media_records(from.store.as_ref(), id, &participant.folder).await?;
    if parts.is_empty() {
        return Ok(());
    }
    let folder = participant_folder(to, id, &participant.participant).await?;
    let listed: HashSet<String> = media_records(to, id, &folder)
        .await?
        .into_iter()
        .map(|part| part.part_id)
        .collect();
    let manifest = participant_media_key(id, &folder).join(MEDIA_MANIFEST);
    for part in parts {
        if listed.contains(&part.part_id) {
            copied.recall_parts_already_there += 1;
            continue;
        }
        let file = match part_file(from, id, &participant.folder, &part).await? {
            Ok(file) => file,
            Err(why) => {
                let at = participant_media_key(id, &participant.folder).join(&part.file);
                copied.skip(format!("{at}: {why}"));
                continue;
            }
        };
        let key = participant_media_key(id, &folder).join(&part.file);
        match to.create_from_file(&key, &file).await? {
            Created::New => {
                copied.recall_parts += 1;
                copied.recall_bytes += part.bytes;
            }
            Created::Existed => copied.recall_parts_already_there += 1,
        }
        append_line(to, &manifest, &part).await?;
    }
    Ok(())
}

/// The file in DATA_DIR that holds `part`, or why it cannot be copied: a name this server
/// does not give, no file, or not the size its line says.
async fn part_file(
    from: &Source,
    id: &RecordingId,
    folder: &str,
    part: &MediaRecord,
) -> anyhow::Result<Result<std::path::PathBuf, String>> {
    if !is_media_file_name(&part.file) {
        return Ok(Err("not a name of Recall's files".into()));
    }
    let key = participant_media_key(id, folder).join(&part.file);
    let Some(path) = from.store.local_file(&key).await? else {
        return Ok(Err("the file is missing".into()));
    };
    let size = tokio::fs::metadata(&path).await?.len();
    Ok(if size == part.bytes {
        Ok(path)
    } else {
        Err(format!(
            "{size} bytes where the manifest says {}",
            part.bytes
        ))
    })
}

/// Adds to each bot's status log in the bucket the webhooks it lacks; returns how many.
/// Every bot's: the logs are kept by bot, not by recording (deleting a recording leaves
/// them), and a recording page finds its bot's by the bot's id.
pub(super) async fn copy_bot_logs(from: &dyn Store, to: &dyn Store) -> anyhow::Result<u64> {
    let mut added = 0;
    for name in from.list_folders(&Key::of(BOTS_FOLDER)).await? {
        let Some(bot) = BotId::parse(&name) else {
            continue;
        };
        let mut there: HashSet<String> = bot_status(to, &bot)
            .await?
            .into_iter()
            .map(|record| record.webhook_id)
            .collect();
        for record in bot_status(from, &bot).await? {
            if there.insert(record.webhook_id.clone()) {
                append_line(to, &bot_status_key(&bot), &record).await?;
                added += 1;
            }
        }
    }
    Ok(added)
}
