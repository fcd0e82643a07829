//! Checking that DDS traffic cannot leave the machine.
//!
//! DDS discovers peers by UDP multicast on every interface. The demo and the tests must only
//! run inside a private network namespace whose only interface is loopback
//! (`scripts/netns.sh`); this check refuses to start them anywhere else.

use anyhow::{Result, bail};

/// Names of the network interfaces of the current network namespace.
pub fn interfaces() -> Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
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
