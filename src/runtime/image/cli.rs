//! `rk3s image import|ls|rm|pull`: the node's image store from the shell.
//! It works while the server runs: the store's records are files, and the
//! server looks them up on disk.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use super::{ImageStore, PullPolicy, RegistriesConfig, reference};
use crate::config::DEFAULT_ROOT_DATA_DIR;

#[derive(Parser, Debug)]
#[command(name = "rk3s image", about = "Manage the node's image store")]
struct Args {
    /// The server's data dir [default: /var/lib/rk3s as root, ~/.local/share/rk3s otherwise]
    #[arg(long, global = true, env = "RK3S_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Import OCI archives or `docker save` archives (optionally gzip/zstd compressed).
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List the images.
    #[command(alias = "list")]
    Ls {
        /// Only print image ids.
        #[arg(short, long)]
        quiet: bool,
        /// Show full image ids and the repo digests.
        #[arg(long)]
        no_trunc: bool,
    },
    /// Remove images by reference or image id.
    #[command(alias = "rmi")]
    Rm {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Pull an image as the node would (registries.yaml applies).
    Pull {
        image: String,
        /// Mirrors, auth and TLS for registries.
        #[arg(long, default_value = "/etc/rk3s/registries.yaml")]
        registries: PathBuf,
    },
}

pub fn main(args: &[String]) -> i32 {
    let argv = std::iter::once("rk3s image".to_string()).chain(args.iter().cloned());
    let args = match Args::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let data_dir = match args.data_dir.or_else(default_data_dir) {
        Some(d) => d,
        None => {
            eprintln!("rk3s image: no data dir: set --data-dir or HOME");
            return 1;
        }
    };
    let root = data_dir.join("agent").join("images");
    let registries = match &args.command {
        Command::Pull { registries, .. } => match RegistriesConfig::load(registries) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("rk3s image: {e}");
                return 1;
            }
        },
        _ => RegistriesConfig::default(),
    };
    let store = match ImageStore::open(root, registries) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rk3s image: {e}");
            return 1;
        }
    };
    match args.command {
        Command::Import { files } => {
            let mut status = 0;
            for f in files {
                match store.import(&f) {
                    Ok(refs) => {
                        for r in refs {
                            println!("imported {r}");
                        }
                    }
                    Err(e) => {
                        eprintln!("rk3s image import: {e}");
                        status = 1;
                    }
                }
            }
            status
        }
        Command::Ls { quiet, no_trunc } => {
            print_list(&store, quiet, no_trunc);
            0
        }
        Command::Rm { images } => {
            let mut status = 0;
            for image in images {
                match store.remove(&image) {
                    Ok(()) => println!("Deleted: {image}"),
                    Err(e) => {
                        eprintln!("rk3s image rm: {e}");
                        status = 1;
                    }
                }
            }
            status
        }
        Command::Pull { image, .. } => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("rk3s image pull: {e}");
                    return 1;
                }
            };
            match runtime.block_on(store.ensure(&image, PullPolicy::Always, &[])) {
                Ok(img) => {
                    println!("Image is up to date for {}", img.spec.image_id);
                    0
                }
                Err(e) => {
                    eprintln!("rk3s image pull: {e}");
                    1
                }
            }
        }
    }
}

fn default_data_dir() -> Option<PathBuf> {
    if nix::unistd::geteuid().is_root() {
        Some(PathBuf::from(DEFAULT_ROOT_DATA_DIR))
    } else {
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share/rk3s"))
    }
}

/// `crictl images`' table: IMAGE, TAG, IMAGE ID, SIZE.
fn print_list(store: &ImageStore, quiet: bool, no_trunc: bool) {
    let images = store.list();
    if quiet {
        let mut seen = std::collections::HashSet::new();
        for i in &images {
            if seen.insert(i.id.clone()) {
                println!("{}", i.id);
            }
        }
        return;
    }
    let mut rows = vec![vec![
        "IMAGE".to_string(),
        "TAG".to_string(),
        "IMAGE ID".to_string(),
        "SIZE".to_string(),
    ]];
    if no_trunc {
        rows[0].push("DIGEST".to_string());
    }
    for i in &images {
        let (repo, tag) = match reference::parse(&i.reference) {
            Ok(r) => (
                reference::repository(&r),
                r.tag().unwrap_or("<none>").to_string(),
            ),
            Err(_) => (i.reference.clone(), "<none>".to_string()),
        };
        let hex = i.id.trim_start_matches("sha256:");
        let id = if no_trunc {
            i.id.clone()
        } else {
            hex.chars().take(13).collect()
        };
        let mut row = vec![repo, tag, id, human_size(i.size)];
        if no_trunc {
            row.push(i.image_id.clone());
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| format!("{cell:<w$}", w = widths[c]))
            .collect();
        println!("{}", line.join("   ").trim_end());
    }
}

/// Decimal units with three significant digits, as docker and crictl print.
fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < units.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    // Three significant digits: 2.15, 21.5, 215.
    let digits = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{value:.digits$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", units[unit])
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn sizes_like_crictl() {
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(2_150_912), "2.15MB");
        assert_eq!(human_size(21_500_000), "21.5MB");
        assert_eq!(human_size(1_000), "1kB");
    }
}
