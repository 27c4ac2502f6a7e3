//! What a test reads back from disk or from a download: JSON files, manifests, ZIPs, trees,
//! WAV files.

use std::io::Cursor;
use std::path::Path;

use serde_json::Value;

use super::TestServer;

/// The lines of a JSON-lines file.
pub fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

/// The file names a stream's `frames.jsonl` lists, in its order.
pub fn listed_files(stream_dir: &Path) -> Vec<String> {
    read_jsonl(&stream_dir.join("frames.jsonl"))
        .iter()
        .map(|line| line["file"].as_str().expect("a file name").to_owned())
        .collect()
}

pub fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("JSON")
}

/// A ZIP archive read whole, to check what a download holds.
pub struct Unzipped(Vec<ZipFile>);

pub struct ZipFile {
    pub name: String,
    pub compression: zip::CompressionMethod,
    pub bytes: Vec<u8>,
}

impl Unzipped {
    pub fn new(body: &[u8]) -> Self {
        use std::io::Read as _;
        let mut archive = zip::ZipArchive::new(Cursor::new(body)).expect("a ZIP archive");
        let files = (0..archive.len())
            .map(|i| {
                let mut file = archive.by_index(i).expect("a file in the archive");
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes).expect("the file reads whole");
                ZipFile {
                    name: file.name().expect("a file name").into_owned(),
                    compression: file.compression(),
                    bytes,
                }
            })
            .collect();
        Unzipped(files)
    }

    /// The names of its files, in the archive's order.
    pub fn names(&self) -> Vec<&str> {
        self.0.iter().map(|file| file.name.as_str()).collect()
    }

    /// The file called `name`; fails the test if there is none.
    pub fn file(&self, name: &str) -> &ZipFile {
        self.0
            .iter()
            .find(|file| file.name == name)
            .unwrap_or_else(|| panic!("{name} is not in the archive"))
    }
}

/// Every file below `root`, as sorted relative paths, leaving out dot-files at the top.
pub fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.retain(|p| !p.starts_with('.'));
    out.sort();
    out
}

/// The samples of a WAV file, read by a real WAV reader, which also checks its format.
pub fn wav_samples(bytes: &[u8]) -> Vec<i16> {
    let reader = hound::WavReader::new(std::io::Cursor::new(bytes)).expect("a WAV file");
    let spec = reader.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (1, 16_000, 16),
        "16 kHz mono 16-bit"
    );
    assert_eq!(spec.sample_format, hound::SampleFormat::Int);
    reader
        .into_samples()
        .map(|s| s.expect("a whole sample"))
        .collect()
}

/// The track at `api` (its JSON path) as one WAV, from the API.
pub async fn track_wav(server: &TestServer, api: &str) -> Vec<i16> {
    let response = server.get(&format!("{api}.wav")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "audio/wav");
    wav_samples(&response.bytes().await.unwrap())
}
