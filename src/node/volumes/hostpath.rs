//! hostPath volumes: the type checks and creations of upstream's hostPath
//! plugin, with its messages.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

/// Check (or create) `path` as `type_` says. Errors are the text after
/// `MountVolume.SetUp failed for volume "x" : `.
pub fn check_type(path: &Path, type_: &str) -> Result<(), String> {
    let shown = path.display();
    let meta = fs::metadata(path);
    let exists = meta.is_ok();
    let ft = meta.as_ref().ok().map(|m| m.file_type());
    let fail = |what: &str| Err(format!("hostPath type check failed: {shown} is not {what}"));
    match type_ {
        "" => Ok(()),
        "DirectoryOrCreate" if !exists => make_dir(path).map_err(|e| e.to_string()),
        "DirectoryOrCreate" | "Directory" => {
            if ft.is_some_and(|t| t.is_dir()) {
                Ok(())
            } else {
                fail("a directory")
            }
        }
        "FileOrCreate" if !exists => make_file(path).map_err(|e| e.to_string()),
        "FileOrCreate" | "File" => {
            if ft.is_some_and(|t| t.is_file()) {
                Ok(())
            } else {
                fail("a file")
            }
        }
        "Socket" => {
            if ft.is_some_and(|t| t.is_socket()) {
                Ok(())
            } else {
                fail("a socket file")
            }
        }
        "CharDevice" => {
            if ft.is_some_and(|t| t.is_char_device()) {
                Ok(())
            } else {
                fail("a character device")
            }
        }
        "BlockDevice" => {
            if ft.is_some_and(|t| t.is_block_device()) {
                Ok(())
            } else {
                fail("a block device")
            }
        }
        other => Err(format!("{other} is an invalid volume type")),
    }
}

/// DirectoryOrCreate: mode 0755 (whatever the umask).
pub fn make_dir(path: &Path) -> io::Result<()> {
    fs::create_dir_all(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
}

/// FileOrCreate: an empty file, mode 0644; the parent must exist.
fn make_file(path: &Path) -> io::Result<()> {
    let f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.set_permissions(fs::Permissions::from_mode(0o644))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn tmp() -> PathBuf {
        let d = std::env::temp_dir().join(format!("rk3s-hp-{}", rand::random::<u64>()));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn types() {
        let d = tmp();
        let dir = d.join("made/deep");
        check_type(&dir, "DirectoryOrCreate").unwrap();
        assert!(dir.is_dir());
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o755
        );
        check_type(&dir, "Directory").unwrap();
        let file = d.join("f");
        check_type(&file, "FileOrCreate").unwrap();
        assert!(file.is_file());
        check_type(&file, "File").unwrap();
        assert_eq!(
            check_type(&file, "Directory").unwrap_err(),
            format!(
                "hostPath type check failed: {} is not a directory",
                file.display()
            )
        );
        assert_eq!(
            check_type(&d.join("missing"), "File").unwrap_err(),
            format!(
                "hostPath type check failed: {}/missing is not a file",
                d.display()
            )
        );
        assert!(check_type(&d.join("missing"), "Directory").is_err());
        assert!(!d.join("missing").exists(), "Directory never creates");
        assert_eq!(
            check_type(&file, "Socket").unwrap_err(),
            format!(
                "hostPath type check failed: {} is not a socket file",
                file.display()
            )
        );
        check_type(Path::new("/dev/null"), "CharDevice").unwrap();
        assert!(
            check_type(Path::new("/dev/null"), "BlockDevice")
                .unwrap_err()
                .ends_with("is not a block device")
        );
        assert_eq!(
            check_type(&file, "Weird").unwrap_err(),
            "Weird is an invalid volume type"
        );
        let sock = d.join("s");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        check_type(&sock, "Socket").unwrap();
        fs::remove_dir_all(&d).unwrap();
    }
}
