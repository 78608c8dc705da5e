//! NDJSON output: one record per line, to stdout or to a file rotated by size and by age
//! (`name.ndjson` → `name.ndjson.<unix-ms>`, the oldest rotated files deleted beyond
//! `keep_files`). Each batch is written and flushed (and fsync'ed for files) before its offset
//! commits, so a crash repeats at most the last batch.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::SinkError;
use super::outbox::OutRecord;

pub struct NdjsonSink {
    path: Option<PathBuf>,
    rotate_bytes: u64,
    rotate_every: Option<Duration>,
    keep_files: usize,
    file: Option<(BufWriter<File>, u64, SystemTime)>,
}

impl NdjsonSink {
    pub fn new(
        path: Option<PathBuf>,
        rotate_bytes: u64,
        rotate_every: Option<Duration>,
        keep_files: usize,
    ) -> NdjsonSink {
        NdjsonSink {
            path,
            rotate_bytes,
            rotate_every,
            keep_files,
            file: None,
        }
    }

    fn open(path: &Path) -> std::io::Result<(BufWriter<File>, u64, SystemTime)> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let f = OpenOptions::new().create(true).append(true).open(path)?;
        let meta = f.metadata()?;
        let created = meta
            .created()
            .or_else(|_| meta.modified())
            .unwrap_or_else(|_| SystemTime::now());
        Ok((BufWriter::with_capacity(1 << 20, f), meta.len(), created))
    }

    fn rotate(&mut self, path: &Path) -> std::io::Result<()> {
        if let Some((mut w, _, _)) = self.file.take() {
            w.flush()?;
        }
        let stamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let mut rotated = path.as_os_str().to_owned();
        rotated.push(format!(".{stamp}"));
        std::fs::rename(path, &rotated)?;
        // Keep the newest `keep_files` rotated files.
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Ok(());
        };
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let prefix = format!("{}.", name.to_string_lossy());
        let mut old: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name().map(|n| n.to_string_lossy()).is_some_and(|n| {
                    n.strip_prefix(&prefix)
                        .is_some_and(|s| s.chars().all(|c| c.is_ascii_digit()))
                })
            })
            .collect();
        old.sort();
        while old.len() > self.keep_files {
            let p = old.remove(0);
            std::fs::remove_file(&p)?;
        }
        Ok(())
    }

    pub fn send(&mut self, records: &[OutRecord]) -> Result<(), SinkError> {
        let mut buf = Vec::with_capacity(records.len() * 512);
        for r in records {
            serde_json::to_writer(&mut buf, &r.body).map_err(|e| SinkError::Permanent {
                status: None,
                message: e.to_string(),
            })?;
            buf.push(b'\n');
        }
        let io = |e: std::io::Error| SinkError::Transient(format!("ndjson: {e}"));
        let Some(path) = self.path.clone() else {
            let mut out = std::io::stdout().lock();
            out.write_all(&buf).map_err(io)?;
            out.flush().map_err(io)?;
            return Ok(());
        };
        if self.file.is_none() {
            self.file = Some(Self::open(&path).map_err(io)?);
        }
        let due = match &self.file {
            Some((_, len, created)) => {
                (self.rotate_bytes > 0 && *len > 0 && len + buf.len() as u64 > self.rotate_bytes)
                    || self.rotate_every.is_some_and(|every| {
                        *len > 0 && created.elapsed().unwrap_or_default() >= every
                    })
            }
            None => false,
        };
        if due {
            self.rotate(&path).map_err(io)?;
            self.file = Some(Self::open(&path).map_err(io)?);
        }
        let Some((w, len, _)) = self.file.as_mut() else {
            return Err(SinkError::Transient("ndjson: file not open".into()));
        };
        let result = w
            .write_all(&buf)
            .and_then(|_| w.flush())
            .and_then(|_| w.get_ref().sync_data());
        match result {
            Ok(()) => {
                *len += buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Reopen next time: a partial line may have been written; the retry repeats
                // the batch (ids let readers drop the repeats).
                self.file = None;
                Err(io(e))
            }
        }
    }
}
