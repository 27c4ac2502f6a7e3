//! The ZIP downloads: a stream's frames, or a whole recording, written by one writer from
//! the catalog's [`SavedFile`]s and streamed as the response body, never held whole.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{AsyncWriteExt as _, StreamExt as _};
use jiff::Timestamp;

use super::api::{CatalogResult as _, recording_id, stream_key};
use crate::catalog::{Catalog, CatalogError, SavedContent, SavedFile};
use crate::error::ApiError;
use crate::layout::{self, FrameRecord};
use crate::state::AppState;
use crate::store::StoreError;

/// Bytes of ZIP held between the writer and the response body.
const ZIP_PIPE_BYTES: usize = 256 * 1024;

/// `GET /api/recordings/{recording}/{participant}/{stream}.zip`: a stream's frames and its
/// `frames.jsonl`, in one folder named `<recording>-<participant>-<type>`.
pub async fn get_stream_zip(
    State(state): State<AppState>,
    Path((recording, participant, stream)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let kind = stream
        .strip_suffix(".zip")
        .ok_or(ApiError::NotFound("route"))?;
    let key = stream_key(&recording, &participant, kind)?;
    let folder = format!("{}-{}-{}", key.recording, key.participant, key.kind);
    let files = vec![
        state
            .catalog
            .stream_files(&key, folder.clone())
            .await
            .or_not_found("stream")?,
    ];
    Ok(zip_response(&state, files, &folder))
}

/// `GET /api/recordings/{recording}/zip`: everything the recording's folder holds (see
/// [`Catalog::recording_files`]), under the paths the layout gives it, `<recording>/...`.
pub async fn get_recording_zip(
    State(state): State<AppState>,
    Path(recording): Path<String>,
) -> Result<Response, ApiError> {
    let id = recording_id(&recording)?;
    let files = state
        .catalog
        .recording_files(&id)
        .await
        .or_not_found("recording")?;
    Ok(zip_response(&state, files, id.as_str()))
}

/// A response whose body is the ZIP of `files`, downloaded as `<name>.zip`.
fn zip_response(state: &AppState, files: Vec<SavedFile>, name: &str) -> Response {
    let disposition = format!("attachment; filename=\"{name}.zip\"");
    let (writer, reader) = tokio::io::duplex(ZIP_PIPE_BYTES);
    let writing = write_zip(state.catalog.clone(), files, writer);
    // The body drives the writer: no task outlives the response, and a client that stops
    // reading stops the writing.
    let failed = futures_util::stream::once(writing).filter_map(|result| async move {
        result
            .err()
            .map(|error| Err(std::io::Error::other(error.to_string())))
    });
    let body = futures_util::stream::select(tokio_util::io::ReaderStream::new(reader), failed);
    let body = super::abort_on_shutdown(body, state.shutdown.clone());
    (
        [
            (header::CONTENT_TYPE, "application/zip".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// The frames a manifest lists, in time order, each once.
fn listed_frames(manifest: &[u8]) -> Vec<(u64, Timestamp)> {
    let mut frames: Vec<(u64, Timestamp)> = crate::store::complete_lines(manifest)
        .filter_map(|line| FrameRecord::parse_line(line).ok())
        .map(|(ms, record)| (ms, record.absolute.unwrap_or(record.received_at)))
        .collect();
    frames.sort_by_key(|(ms, _)| *ms);
    frames.dedup_by_key(|(ms, _)| *ms);
    frames
}

#[derive(Debug, thiserror::Error)]
enum ZipStreamError {
    #[error(transparent)]
    Zip(#[from] async_zip::error::ZipError),
    #[error("cannot read {0}")]
    Catalog(String, #[source] CatalogError),
    #[error("cannot write the ZIP")]
    Write(#[from] std::io::Error),
}

type ZipWriter = async_zip::tokio::write::ZipFileWriter<tokio::io::DuplexStream>;

/// Writes the ZIP of `files` to `out`, reading one file at a time.
async fn write_zip(
    catalog: std::sync::Arc<Catalog>,
    files: Vec<SavedFile>,
    out: tokio::io::DuplexStream,
) -> Result<(), ZipStreamError> {
    // async_zip goes ZIP64 by itself past 65,535 entries or 4 GiB, as a long meeting does.
    let mut zip = async_zip::base::write::ZipFileWriter::with_tokio(out);
    let written = async {
        let now = Timestamp::now();
        for file in &files {
            let read = |error| ZipStreamError::Catalog(file.path.clone(), error);
            let whole = match &file.content {
                SavedContent::Whole(key) => catalog.whole_file(key).await.map_err(read)?,
                SavedContent::Log(key) => catalog.whole_log(key).await.map_err(read)?,
                SavedContent::Read(bytes) => Some(bytes.clone()),
                SavedContent::Large(key) => {
                    if let Some(streamed) = catalog.file_stream(key).await.map_err(read)? {
                        add_stream(&mut zip, &file.path, now, streamed.body).await?;
                    }
                    continue;
                }
                SavedContent::Stream(stream) => {
                    write_stream(&catalog, &mut zip, stream, &file.path).await?;
                    continue;
                }
            };
            if let Some(bytes) = whole {
                add(&mut zip, file.path.clone(), now, &bytes).await?;
            }
        }
        // Writes the central directory; dropping the pipe then ends the body.
        zip.close().await?;
        Ok(())
    }
    .await;
    if let Err(error) = &written {
        tracing::warn!(error = format!("{error:#}"), "ZIP download cut short");
    }
    written
}

/// A stream's frames under `folder`, each as saved, then its `frames.jsonl`: exactly the
/// frames the manifest listed when the stream was reached.
async fn write_stream(
    catalog: &Catalog,
    zip: &mut ZipWriter,
    stream: &crate::frame::StreamKey,
    folder: &str,
) -> Result<(), ZipStreamError> {
    let manifest = match catalog.manifest(stream).await {
        Ok(manifest) => manifest,
        Err(error) => return Err(ZipStreamError::Catalog(folder.to_owned(), error)),
    };
    let mut latest = None;
    for (relative_ms, time) in listed_frames(&manifest) {
        let name = layout::frame_file_name(relative_ms);
        let png = match catalog.frame_bytes(stream, relative_ms).await {
            Ok(png) => png,
            Err(CatalogError::NotFound) => {
                tracing::warn!(key = %stream, file = name, "listed frame has no file; left out of the ZIP");
                continue;
            }
            Err(error) => return Err(ZipStreamError::Catalog(name, error)),
        };
        add(zip, format!("{folder}/{name}"), time, &png).await?;
        latest = Some(time);
    }
    let manifest_path = format!("{folder}/{}", layout::FRAMES_MANIFEST);
    let time = latest.unwrap_or_else(Timestamp::now);
    add(zip, manifest_path, time, &manifest).await
}

/// One entry of bytes in memory.
async fn add(
    zip: &mut ZipWriter,
    path: String,
    time: Timestamp,
    bytes: &[u8],
) -> Result<(), ZipStreamError> {
    zip.write_entry_whole(entry(path, time), bytes).await?;
    Ok(())
}

/// One entry copied from `body` a part at a time as the store reads it, never whole in
/// memory: a file of hundreds of MB (Recall's media) costs no more than a PNG.
async fn add_stream(
    zip: &mut ZipWriter,
    path: &str,
    time: Timestamp,
    mut body: BoxStream<'static, Result<Bytes, StoreError>>,
) -> Result<(), ZipStreamError> {
    let mut entry = zip.write_entry_stream(entry(path.to_owned(), time)).await?;
    while let Some(part) = body.next().await {
        let part = part.map_err(|error| ZipStreamError::Catalog(path.to_owned(), error.into()))?;
        entry.write_all(&part).await?;
    }
    entry.close().await?;
    Ok(())
}

/// An entry stored rather than deflated: PNGs, MP4s and MP3s are compressed already, and
/// the JSON is small beside them.
fn entry(path: String, time: Timestamp) -> async_zip::ZipEntryBuilder {
    async_zip::ZipEntryBuilder::new(path.into(), async_zip::Compression::Stored)
        .last_modification_date(zip_time(time))
}

/// A ZIP entry's time: the DOS date-time fields, in UTC.
fn zip_time(time: Timestamp) -> async_zip::ZipDateTime {
    let civil = time.to_zoned(jiff::tz::TimeZone::UTC).datetime();
    async_zip::ZipDateTimeBuilder::new()
        .year(civil.year().into())
        .month(civil.month() as u32)
        .day(civil.day() as u32)
        .hour(civil.hour() as u32)
        .minute(civil.minute() as u32)
        .second(civil.second() as u32)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_lists_each_frame_once_in_time_order() {
        let line = |file: &str| {
            format!(
                "{{\"file\":\"{file}\",\"relative\":1.0,\"absolute\":null,\"width\":1,\"height\":1,\
                 \"bytes\":1,\"received_at\":\"2026-11-21T10:00:00Z\"}}\n"
            )
        };
        let manifest = [
            line("000002000.png"),
            line("000001000.png"),
            line("000002000.png"),
            "not json\n".to_owned(),
            line("../etc.png"),
        ]
        .concat();
        let listed: Vec<u64> = listed_frames(manifest.as_bytes())
            .into_iter()
            .map(|(ms, _)| ms)
            .collect();
        assert_eq!(listed, vec![1000, 2000]);
    }

    /// A long meeting's recording has more entries than a plain ZIP counts (65,535): the
    /// writer goes ZIP64 by itself, and a real reader opens the archive whole.
    #[tokio::test]
    async fn an_archive_of_many_entries_is_read_whole() {
        async fn archive(entries: usize) -> Result<usize, zip::result::ZipError> {
            use tokio::io::AsyncReadExt as _;
            let (out, mut read) = tokio::io::duplex(ZIP_PIPE_BYTES);
            let write = async move {
                let mut zip = async_zip::base::write::ZipFileWriter::with_tokio(out);
                let time = Timestamp::now();
                for i in 0..entries {
                    add(&mut zip, format!("{i:09}.png"), time, b"")
                        .await
                        .unwrap();
                }
                zip.close().await.unwrap();
            };
            let mut bytes = Vec::new();
            let ((), _) = tokio::join!(write, read.read_to_end(&mut bytes));
            Ok(zip::ZipArchive::new(std::io::Cursor::new(bytes))?.len())
        }
        let many = u16::MAX as usize + 10;
        assert_eq!(archive(many).await.unwrap(), many);
        assert_eq!(archive(3).await.unwrap(), 3);
    }

    #[test]
    fn zip_times_are_utc_fields() {
        let time: Timestamp = "2026-11-21T10:00:12.5Z".parse().unwrap();
        let zip = zip_time(time);
        assert_eq!(
            (zip.year(), zip.month(), zip.day(), zip.hour(), zip.minute()),
            (2026, 11, 21, 10, 0)
        );
    }
}
