//! The ROS 2 node applications: each wires the transport to the algorithm modules. The
//! binaries in `src/bin` only call [`main_with`] with one of these.

pub mod actuator;
pub mod latest;
pub mod live_params;
pub mod player;
pub mod sorter;

use std::process::ExitCode;

use crate::params::{ParamSpec, RosArgs, help_text};

/// Sets up `tracing` on stderr with ROS-style levels: `--log-level` (debug, info, warn, error,
/// fatal) wins over `RUST_LOG`, which wins over `info`. DDS internals log at warn and above.
pub fn init_logging(level: Option<&str>) {
    // The DDS stack logs discovery chatter at info, and a warning per malformed message or
    // service request, unthrottled; this package counts and reports those itself. RustDDS's
    // pubsub module logs an ERROR for every reader and writer ros2-client drops after the
    // participant's event loop has ended, i.e. at every exit. Silencing the module also
    // loses its one other line, a failed notice to discovery about a new topic.
    let quiet_dds = "rustdds=error,rustdds::dds::pubsub=off,ros2_client=error";
    let filter = match level.map(str::to_ascii_lowercase).as_deref() {
        Some("fatal") => format!("error,{quiet_dds}"),
        Some(l) => format!("{l},{quiet_dds}"),
        None => std::env::var("RUST_LOG").unwrap_or_else(|_| format!("info,{quiet_dds}")),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let console = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        // Colour codes only where a person reads a terminal, not in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // On the rcl backend rcutils prints the node's lines once it has a node.
    #[cfg(feature = "r2r")]
    let console = {
        use tracing_subscriber::Layer as _;
        console.with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            !(crate::transport::rcl::log::forwarding() && meta.target().starts_with("coin_sorter"))
        }))
    };
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(console)
        .with(crate::transport::rosout::RosoutLayer);
    #[cfg(feature = "r2r")]
    let registry = registry.with(crate::transport::rcl::log::RclLogLayer);
    let _ = registry.try_init();
}

/// Common start-up of a node binary: `--help`, `--dump-params`, `--ros-args` parsing and
/// logging, then `run`. Start-up errors print one line and exit with code 1 (bad
/// configuration) before any DDS traffic.
pub fn main_with(
    program: &str,
    about: &str,
    specs: &[ParamSpec],
    default_name: &str,
    run: impl FnOnce(RosArgs, crate::params::ParamSet) -> anyhow::Result<()>,
) -> ExitCode {
    let argv: Result<Vec<String>, _> =
        std::env::args_os().skip(1).map(std::ffi::OsString::into_string).collect();
    let Ok(argv) = argv else {
        eprintln!("{program}: an argument is not valid UTF-8; ROS 2 names and values must be");
        return ExitCode::from(2);
    };
    let args = match RosArgs::parse(argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{program}: {e:#}");
            return ExitCode::from(2);
        }
    };
    if args.other.iter().any(|a| a == "--help" || a == "-h") {
        print!("{}", help_text(program, about, specs));
        return ExitCode::SUCCESS;
    }
    let name = args.node_name.clone().unwrap_or_else(|| default_name.to_string());
    let ns = args.namespace.clone().unwrap_or_else(|| "/".to_string());
    let fq = format!("{}/{}", ns.trim_end_matches('/'), name);
    if args.other.iter().any(|a| a == "--dump-params") {
        print!("{}", crate::params::ParamSet::defaults(specs).to_params_yaml(&fq, specs));
        return ExitCode::SUCCESS;
    }
    if let Some(a) = args.other.first() {
        eprintln!("{program}: unexpected argument {a:?}; see --help");
        return ExitCode::from(2);
    }
    init_logging(args.log_level.as_deref());
    let params = match args.resolve_params(specs, &fq) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("invalid parameters: {e:#}; not starting");
            return ExitCode::from(1);
        }
    };
    match run(args, params) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}; exiting");
            ExitCode::from(1)
        }
    }
}

/// Resolves when the process gets SIGINT or SIGTERM (launch stops nodes with SIGINT).
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
