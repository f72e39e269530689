//! The `rk3s` binary: one process for the whole cluster.

use rk3s::cli::{self, Command};

// glibc malloc was a fifth of the API server's CPU under write load
// (fragmentation, consolidation); mimalloc is faster and keeps RSS low.
// `--features system-allocator` swaps it out for heap profilers (heaptrack
// sees only malloc).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    tune_allocator();
    let command = cli::parse();
    match command {
        Command::Server(cfg) => {
            init_tracing(&cfg.log_level);
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("rk3s: cannot start the runtime: {e}");
                    std::process::exit(1);
                }
            };
            if let Err(e) = rt.block_on(rk3s::server::run(*cfg)) {
                tracing::error!("{e}");
                eprintln!("rk3s: {e}");
                std::process::exit(1);
            }
        }
        // The shim forks containers: it must run before any runtime threads exist.
        Command::Shim(args) => std::process::exit(rk3s::runtime::shim::main(&args)),
        Command::Image(args) => std::process::exit(rk3s::runtime::image::cli::main(&args)),
        Command::CheckConfig(args) => std::process::exit(rk3s::node::checkconfig::main(&args)),
        Command::Killall(args) => std::process::exit(rk3s::node::killall::main(&args)),
    }
}

fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RK3S_LOG").unwrap_or_else(|_| {
        // A plain level applies to rk3s; a filter string is taken as it is.
        if level.contains('=') || level.contains(',') {
            tracing_subscriber::EnvFilter::new(level)
        } else {
            tracing_subscriber::EnvFilter::new(format!("rk3s={level},warn"))
        }
    });
    use std::io::IsTerminal;
    // Colour only on a terminal: log files and journald get plain text.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

/// mimalloc reads its options from the environment when the process starts,
/// before `main`. By default it commits arena memory up front, which adds
/// ~15 MB to the idle server's RSS, and it returns freed pages to the system
/// only at a later allocation of the same thread, which an idle server's
/// threads never make (~4.5 MB kept after start-up). So start once more
/// with lazy commit and immediate purging unless the environment already
/// chose (the API bench showed no throughput cost). Children (the per-pod
/// shims) inherit the settings.
fn tune_allocator() {
    const OPTION: &str = "MIMALLOC_ARENA_EAGER_COMMIT";
    const PURGE: &str = "MIMALLOC_PURGE_DELAY";
    if std::env::var_os(OPTION).is_some() {
        return;
    }
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "rk3s".into());
    let err = std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .env(OPTION, "0")
        .env(PURGE, std::env::var_os(PURGE).unwrap_or_else(|| "0".into()))
        .exec();
    // Not fatal: run on with the default (only memory is at stake).
    eprintln!("rk3s: re-exec to tune the allocator failed: {err}");
}
