//! Checking that DDS traffic cannot leave the machine.
//!
//! DDS discovers peers by UDP multicast on every interface. The demo and the tests must only
//! run inside a private network namespace whose only interface is loopback
//! (`scripts/netns.sh`); this check refuses to start them anywhere else.

use anyhow::{Context, Result, bail};

/// Names of the network interfaces of the current network namespace. Read from
/// `/proc/self/net/dev`, which follows the process's namespace (`/sys/class/net` shows the
/// namespace that mounted sysfs instead).
pub fn interfaces() -> Result<Vec<String>> {
    let path = "/proc/self/net/dev";
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(name, _)| name.trim().to_string())
        .collect();
    names.sort();
    Ok(names)
}

/// Fails unless loopback is the only interface, naming the others.
pub fn require_loopback_only(what: &str) -> Result<()> {
    let names = interfaces()?;
    let others: Vec<&String> = names.iter().filter(|n| *n != "lo").collect();
    if !others.is_empty() {
        bail!(
            "{what} starts DDS participants and must run in a private network namespace with \
             only loopback (use scripts/netns.sh); this one also has {others:?}"
        );
    }
    Ok(())
}
