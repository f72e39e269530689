//! The CRI log format the kubelet reads (`kubectl logs`): one line per
//! line of output, `<RFC3339Nano> <stdout|stderr> <F|P> <content>`, `P`
//! for pieces of lines longer than [`MAX_LINE`]. Files rotate by size,
//! keeping a bounded number, as the kubelet's containerLogMaxSize and
//! containerLogMaxFiles do.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The kubelet's defaults: 10 MiB x 5 files.
pub const DEFAULT_MAX_SIZE: u64 = 10 << 20;
pub const DEFAULT_MAX_FILES: usize = 5;
/// Lines longer than this are cut into partial (`P`) records, as CRI
/// runtimes do.
pub const MAX_LINE: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

pub struct CriLog {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max_size: u64,
    max_files: usize,
    /// Unterminated output per stream.
    pending: [Vec<u8>; 2],
}

impl CriLog {
    pub fn open(path: &Path, max_size: u64, max_files: usize) -> std::io::Result<CriLog> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(CriLog {
            path: path.to_path_buf(),
            file: Some(file),
            size,
            max_size: max_size.max(1024),
            max_files: max_files.max(1),
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// Record output; complete lines are written at once.
    pub fn write(&mut self, stream: Stream, mut data: &[u8]) {
        let idx = stream as usize;
        while let Some(nl) = data.iter().position(|b| *b == b'\n') {
            let mut line = std::mem::take(&mut self.pending[idx]);
            line.extend_from_slice(&data[..nl]);
            self.emit_full(stream, &line);
            data = &data[nl + 1..];
        }
        self.pending[idx].extend_from_slice(data);
        while self.pending[idx].len() >= MAX_LINE {
            let rest = self.pending[idx].split_off(MAX_LINE);
            let chunk = std::mem::replace(&mut self.pending[idx], rest);
            self.emit(stream, 'P', &chunk);
        }
    }

    /// The stream ended: what is left is a final line.
    pub fn flush(&mut self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let rest = std::mem::take(&mut self.pending[stream as usize]);
            if !rest.is_empty() {
                self.emit(stream, 'F', &rest);
            }
        }
    }

    fn emit_full(&mut self, stream: Stream, line: &[u8]) {
        // A complete line longer than the limit still ends in a P chain.
        let mut rest = line;
        while rest.len() > MAX_LINE {
            self.emit(stream, 'P', &rest[..MAX_LINE]);
            rest = &rest[MAX_LINE..];
        }
        self.emit(stream, 'F', rest);
    }

    fn emit(&mut self, stream: Stream, tag: char, content: &[u8]) {
        let mut record = Vec::with_capacity(content.len() + 48);
        record.extend_from_slice(timestamp().as_bytes());
        record.push(b' ');
        record.extend_from_slice(stream.name().as_bytes());
        record.push(b' ');
        record.push(tag as u8);
        record.push(b' ');
        record.extend_from_slice(content);
        record.push(b'\n');
        if self.size > 0 && self.size + record.len() as u64 > self.max_size {
            self.rotate();
        }
        if let Some(f) = &mut self.file
            && f.write_all(&record).is_ok()
        {
            self.size += record.len() as u64;
        }
    }

    /// `<path>` becomes `<path>.<timestamp>`; the oldest rotated files go
    /// beyond `max_files - 1` of them.
    fn rotate(&mut self) {
        self.file = None;
        let stamp = jiff::Timestamp::now()
            .strftime("%Y%m%d-%H%M%S%.6f")
            .to_string();
        let rotated = PathBuf::from(format!("{}.{stamp}", self.path.display()));
        let _ = std::fs::rename(&self.path, &rotated);
        let mut old = rotated_files(&self.path);
        old.sort();
        while old.len() > self.max_files.saturating_sub(1) {
            let _ = std::fs::remove_file(old.remove(0));
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .ok();
        self.size = 0;
    }
}

/// The rotated siblings of a log file, `<name>.<timestamp>`.
pub fn rotated_files(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let prefix = format!("{}.", name.to_string_lossy());
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// RFC 3339 with nanoseconds, always nine digits so lines sort (as
/// containerd writes them).
pub fn timestamp() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.9fZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> PathBuf {
        let d = std::env::temp_dir().join(format!("rk3s-log-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn lines_partials_and_flush() {
        let d = tmp();
        let p = d.join("0.log");
        let mut log = CriLog::open(&p, DEFAULT_MAX_SIZE, 5).unwrap();
        log.write(Stream::Stdout, b"hello\nwor");
        log.write(Stream::Stderr, b"oops\n");
        log.write(Stream::Stdout, b"ld\n");
        log.write(Stream::Stdout, &vec![b'x'; MAX_LINE + 10]);
        log.write(Stream::Stdout, b"tail");
        log.flush();
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        let fields: Vec<Vec<&str>> = lines.iter().map(|l| l.splitn(4, ' ').collect()).collect();
        assert_eq!(fields[0][1..], ["stdout", "F", "hello"]);
        assert_eq!(fields[1][1..], ["stderr", "F", "oops"]);
        assert_eq!(fields[2][1..], ["stdout", "F", "world"]);
        assert_eq!(fields[3][2], "P");
        assert_eq!(fields[3][3].len(), MAX_LINE);
        assert_eq!(fields[4][1..3], ["stdout", "F"]);
        assert_eq!(fields[4][3], format!("{}tail", "x".repeat(10)));
        // RFC 3339 with nine fractional digits, parseable.
        assert_eq!(fields[0][0].len(), "2024-01-01T00:00:00.000000000Z".len());
        assert!(fields[0][0].parse::<jiff::Timestamp>().is_ok());
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn rotation_keeps_max_files() {
        let d = tmp();
        let p = d.join("0.log");
        let mut log = CriLog::open(&p, 2048, 3).unwrap();
        for i in 0..200 {
            log.write(
                Stream::Stdout,
                format!("line {i} ..........................\n").as_bytes(),
            );
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
        let rotated = rotated_files(&p);
        assert_eq!(rotated.len(), 2, "{rotated:?}");
        assert!(std::fs::metadata(&p).unwrap().len() <= 2048);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.trim_end()
                .ends_with("line 199 ..........................")
        );
        std::fs::remove_dir_all(d).unwrap();
    }
}
