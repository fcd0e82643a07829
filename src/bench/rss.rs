//! Resident memory of a process, as the kernel reports it.

use anyhow::{Context, Result};

/// Resident set size of process `pid` (`None`: this process) in bytes, from
/// `/proc/PID/status`.
pub fn resident_bytes(pid: Option<u32>) -> Result<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .with_context(|| format!("{path} has no VmRSS line"))?;
    Ok(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_resident_size() {
        let before = resident_bytes(None).unwrap();
        // Touch 64 MiB so the resident size must grow by at least most of it.
        let big = vec![1u8; 64 << 20];
        let after = resident_bytes(None).unwrap();
        assert!(big.iter().map(|&b| b as u64).sum::<u64>() == 64 << 20);
        assert!(after >= before + (48 << 20), "{before} -> {after}");
        assert!(resident_bytes(Some(u32::MAX)).is_err());
    }
}
