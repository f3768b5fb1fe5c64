//! A folder standing in for the buckets: `<root>/<bucket>/<key>`, the same key layout as S3.
//! Writes land under a temporary name and are renamed into place when finished, so a reader
//! never sees half an object, as with S3's multipart uploads. Tags live in memory.

use std::collections::HashMap;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use sluice_core::sanitize::drive::ByteSink;
use sluice_stages::ports::{ObjectMeta, ObjectUpload, Objects};
use tokio::io::AsyncWriteExt;

/// Why a folder operation failed; names the object, never its contents.
#[derive(Debug, thiserror::Error)]
#[error("{op} {bucket}/{key}: {source}")]
pub struct FolderError {
    op: &'static str,
    bucket: String,
    key: String,
    #[source]
    source: io::Error,
}

impl FolderError {
    /// An error of operation `op` on an object, for adapters that wrap a folder.
    pub fn new(op: &'static str, bucket: &str, key: &str, source: io::Error) -> Self {
        Self {
            op,
            bucket: bucket.to_string(),
            key: key.to_string(),
            source,
        }
    }
}

/// Tags by (bucket, key).
type Tags = HashMap<(String, String), Vec<(String, String)>>;
/// User metadata by (bucket, key).
type Metadata = HashMap<(String, String), HashMap<String, String>>;

#[derive(Debug)]
pub struct FolderObjects {
    root: PathBuf,
    tags: Mutex<Tags>,
    metadata: Mutex<Metadata>,
}

impl FolderObjects {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            tags: Mutex::default(),
            metadata: Mutex::default(),
        }
    }

    /// Copies the local file `from` in as `bucket/key` with user `metadata` (what an upload
    /// with `x-amz-meta-*` headers does), kept for this process.
    pub async fn put_file(
        &self,
        bucket: &str,
        key: &str,
        from: &Path,
        metadata: HashMap<String, String>,
    ) -> Result<(), FolderError> {
        let fail = |e| Self::error("copy", bucket, key, e);
        let path = self.path(bucket, key).map_err(fail)?;
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(fail)?;
        }
        let temp = temporary(&path);
        tokio::fs::copy(from, &temp).await.map_err(fail)?;
        tokio::fs::rename(&temp, &path).await.map_err(fail)?;
        let mut all = self.metadata.lock().unwrap_or_else(|e| e.into_inner());
        all.insert((bucket.to_string(), key.to_string()), metadata);
        Ok(())
    }

    /// Where `bucket/key` lives; a key that would leave its bucket's folder (`..`, an
    /// absolute path) is refused.
    pub fn path(&self, bucket: &str, key: &str) -> io::Result<PathBuf> {
        let inside = |p: &str| {
            !p.is_empty()
                && Path::new(p)
                    .components()
                    .all(|c| matches!(c, Component::Normal(_)))
        };
        if !inside(bucket) || bucket.contains('/') || !inside(key) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "bucket and key must be plain relative names",
            ));
        }
        Ok(self.root.join(bucket).join(key))
    }

    /// The tags set on an object in this process.
    pub fn tags(&self, bucket: &str, key: &str) -> Vec<(String, String)> {
        let tags = self.tags.lock().unwrap_or_else(|e| e.into_inner());
        tags.get(&(bucket.to_string(), key.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    fn error(op: &'static str, bucket: &str, key: &str, source: io::Error) -> FolderError {
        FolderError {
            op,
            bucket: bucket.to_string(),
            key: key.to_string(),
            source,
        }
    }
}

/// A file's ETag: its size and modification time. Changes when the file is written again;
/// no read of the content needed.
fn etag(meta: &std::fs::Metadata) -> String {
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}-{modified:x}", meta.len())
}

fn temporary(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.part", uuid::Uuid::new_v4()))
}

/// An object being written to a temporary file, renamed into place by `finish`.
pub struct FolderUpload {
    /// The open temporary file and the final path; or why it could not be opened.
    state: Result<(tokio::fs::File, PathBuf, PathBuf), (io::ErrorKind, String)>,
    bucket: String,
    key: String,
    bytes: u64,
}

impl ByteSink for FolderUpload {
    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.state {
            Ok((file, _, _)) => {
                AsyncWriteExt::write_all(file, bytes).await?;
                self.bytes += bytes.len() as u64;
                Ok(())
            }
            Err((kind, message)) => Err(io::Error::new(*kind, message.clone())),
        }
    }
}

impl ObjectUpload for FolderUpload {
    type Error = FolderError;

    async fn finish(self) -> Result<u64, FolderError> {
        let fail = |e| FolderObjects::error("write", &self.bucket, &self.key, e);
        let (mut file, temp, path) = match self.state {
            Ok(state) => state,
            Err((kind, message)) => return Err(fail(io::Error::new(kind, message))),
        };
        file.flush().await.map_err(fail)?;
        drop(file);
        tokio::fs::rename(&temp, &path).await.map_err(fail)?;
        Ok(self.bytes)
    }

    async fn abort(self) {
        if let Ok((file, temp, _)) = self.state {
            drop(file);
            let _ = tokio::fs::remove_file(temp).await;
        }
    }
}

impl Objects for FolderObjects {
    type Error = FolderError;
    type Reader = tokio::fs::File;
    type Upload = FolderUpload;

    async fn open(
        &self,
        bucket: &str,
        key: &str,
        _version: Option<&str>,
    ) -> Result<Option<(tokio::fs::File, ObjectMeta)>, FolderError> {
        let fail = |e| Self::error("open", bucket, key, e);
        let path = self.path(bucket, key).map_err(fail)?;
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(fail(e)),
        };
        let meta = file.metadata().await.map_err(fail)?;
        let object = ObjectMeta {
            last_modified: meta.modified().ok(),
            size: meta.len() as i64,
            etag: etag(&meta),
            version_id: None,
            metadata: self
                .metadata
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&(bucket.to_string(), key.to_string()))
                .cloned()
                .unwrap_or_default(),
        };
        Ok(Some((file, object)))
    }

    async fn metadata(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<HashMap<String, String>>, FolderError> {
        Ok(self
            .open(bucket, key, None)
            .await?
            .map(|(_, meta)| meta.metadata))
    }

    fn upload(&self, bucket: &str, key: &str, _content_type: &str) -> FolderUpload {
        let opened = self.path(bucket, key).and_then(|path| {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let temp = temporary(&path);
            let file = std::fs::File::create(&temp)?;
            Ok((tokio::fs::File::from_std(file), temp, path))
        });
        FolderUpload {
            state: opened.map_err(|e| (e.kind(), e.to_string())),
            bucket: bucket.to_string(),
            key: key.to_string(),
            bytes: 0,
        }
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), FolderError> {
        let mut upload = self.upload(bucket, key, content_type);
        let written = upload.write_all(&body).await;
        if let Err(e) = written {
            upload.abort().await;
            return Err(Self::error("write", bucket, key, e));
        }
        upload.finish().await.map(|_| ())
    }

    async fn merge_tags(
        &self,
        bucket: &str,
        key: &str,
        ours: &[(&str, &str)],
    ) -> Result<Vec<String>, FolderError> {
        let mut tags = self.tags.lock().unwrap_or_else(|e| e.into_inner());
        let entry = tags
            .entry((bucket.to_string(), key.to_string()))
            .or_default();
        entry.retain(|(k, _)| !ours.iter().any(|(o, _)| o == k));
        entry.extend(ours.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Ok(Vec::new())
    }
}
