//! Give back what an idle shim keeps resident but does not need.
//!
//! The shim is the whole rk3s binary re-executed, and starting a container
//! runs a lot of it (libcontainer, serde, the seccomp compiler): every page
//! of code that ran, plus the kernel's fault-around neighbours, stays in
//! the shim's page tables and counts in its RSS (~9 MB of the ~11 MB a shim
//! with one container showed). Those are clean pages of files the page
//! cache holds anyway (the agent maps the same binary), so once the shim is
//! idle it unmaps them from itself with `MADV_DONTNEED`: the page cache
//! keeps them, nothing is written back, and code that runs again faults
//! its pages back in (minor faults, microseconds each). The kernel does the
//! same to such pages under memory pressure, so nothing here can happen
//! that could not happen without it.
//!
//! Only private file mappings that are not writable and hold no anonymous
//! (copy-on-write) pages are dropped: for those `MADV_DONTNEED` is exactly
//! "forget the mapping's pages", whereas on relocated data (RELRO) or a
//! written `.data` it would throw away our changes. The shim is single
//! threaded, so nothing writes a mapping between the check and the advice.

use std::path::Path;

/// One mapping of /proc/self/smaps.
#[derive(Debug, Default, PartialEq)]
struct Mapping {
    start: usize,
    end: usize,
    perms: String,
    inode: u64,
    rss_kb: u64,
    /// None when smaps did not say: then the mapping is left alone.
    anonymous_kb: Option<u64>,
}

impl Mapping {
    /// Clean, read-only, private pages of a file: safe to forget.
    fn droppable(&self) -> bool {
        let p = self.perms.as_bytes();
        self.inode != 0
            && p.len() == 4
            && p[1] != b'w'
            && p[3] == b'p'
            && self.anonymous_kb == Some(0)
            && self.rss_kb > 0
    }
}

/// The mappings of an smaps text (only the fields we look at).
fn parse_smaps(text: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let Some(first) = f.next() else { continue };
        if let Some((a, b)) = first.split_once('-')
            && let (Ok(start), Ok(end)) =
                (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        {
            // "start-end perms offset dev inode [path]"
            let perms = f.next().unwrap_or("").to_string();
            let inode = f.nth(2).and_then(|i| i.parse().ok()).unwrap_or(0);
            out.push(Mapping {
                start,
                end,
                perms,
                inode,
                ..Default::default()
            });
            continue;
        }
        let Some(m) = out.last_mut() else { continue };
        let kb = || f.clone().next().and_then(|v| v.parse::<u64>().ok());
        match first {
            "Rss:" => m.rss_kb = kb().unwrap_or(0),
            "Anonymous:" => m.anonymous_kb = kb(),
            _ => {}
        }
    }
    out
}

/// Drop the shim's clean file pages; returns how many kB were resident.
pub fn release() -> u64 {
    let Ok(text) = std::fs::read_to_string(Path::new("/proc/self/smaps")) else {
        return 0;
    };
    // The ranges go into a fixed array and the text and list are freed
    // first: after the advice, every line of code that runs faults back in.
    let mut ranges = [(0usize, 0usize, 0u64); 256];
    let mut n = 0;
    for m in parse_smaps(&text).iter().filter(|m| m.droppable()) {
        if n == ranges.len() {
            break;
        }
        ranges[n] = (m.start, m.end, m.rss_kb);
        n += 1;
    }
    drop(text);
    let mut dropped = 0;
    for &(start, end, rss_kb) in &ranges[..n] {
        // SAFETY: the range is a whole mapping of ours that `droppable`
        // showed holds only clean, unmodified file pages, which fault back
        // in unchanged from the file when touched again.
        let rc =
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        if rc == 0 {
            dropped += rss_kb;
        }
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55eecb7de000-55eecc0c5000 r--p 00000000 fe:00 9454815    /usr/bin/rk3s
Size:               9116 kB
Rss:                1216 kB
Anonymous:             0 kB
55eecc0c5000-55eece2d7000 r-xp 008e6000 fe:00 9454815    /usr/bin/rk3s
Rss:                7568 kB
Anonymous:             0 kB
55eece2d7000-55eece3f6000 r--p 02af7000 fe:00 9454815    /usr/bin/rk3s
Rss:                1148 kB
Anonymous:          1140 kB
55eece3f6000-55eece405000 rw-p 02c15000 fe:00 9454815    /usr/bin/rk3s
Rss:                  60 kB
Anonymous:            60 kB
2bb12c00000-2bb12f70000 rw-p 00000000 00:00 0
Rss:                 328 kB
Anonymous:           328 kB
7f8a5d145000-7f8a5d147000 r-xp 00000000 00:00 0                          [vdso]
Rss:                   4 kB
Anonymous:             0 kB
7f8a5cf78000-7f8a5d0ce000 r-xp 00026000 fe:00 326279    /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                 664 kB
7f8a5d000000-7f8a5d001000 r--s 00000000 fe:00 1234    /dev/shm/x
Rss:                   4 kB
Anonymous:             0 kB
";

    #[test]
    fn only_clean_private_read_only_file_pages_are_dropped() {
        let maps = parse_smaps(SMAPS);
        assert_eq!(maps.len(), 8);
        assert_eq!(maps[1].start, 0x55eecc0c5000);
        assert_eq!(maps[1].rss_kb, 7568);
        let dropped: Vec<bool> = maps.iter().map(Mapping::droppable).collect();
        // rodata and text: yes; relocated RELRO, .data, heap, vdso: no;
        // libc without an Anonymous line: no (unknown); shared: no.
        assert_eq!(
            dropped,
            [true, true, false, false, false, false, false, false]
        );
    }

    fn rss_file_kb() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("RssFile:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn release_unmaps_file_pages_and_the_process_keeps_working() {
        let before_text = format!("{}", 6 * 7);
        let before = rss_file_kb();
        let dropped = release();
        let after = rss_file_kb();
        assert!(dropped > 0, "nothing was resident to drop");
        assert!(
            after < before,
            "RssFile did not shrink: {before} kB -> {after} kB"
        );
        // Code and read-only data fault back in unchanged: formatting
        // (code, relocated vtables left alone) and literals still work.
        assert_eq!(format!("{}", 6 * 7), before_text);
        assert_eq!(release_twice_marker(), "still here");
    }

    fn release_twice_marker() -> &'static str {
        release();
        "still here"
    }
}
