//! How far DDS discovery reaches, from the environment variables ROS 2 nodes read:
//! `ROS_AUTOMATIC_DISCOVERY_RANGE` (Iron and later), `ROS_LOCALHOST_ONLY` (Humble; deprecated
//! since), and `ROS_STATIC_PEERS`.
//!
//! RustDDS can limit the interfaces it uses for multicast and advertises to peers, which is
//! what LOCALHOST needs. It cannot turn discovery off or add static peers, so `OFF` is served
//! as LOCALHOST and `ROS_STATIC_PEERS` is ignored, each with a warning.

use anyhow::{Result, bail};

/// The reach this process's DDS participant gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoveryRange {
    /// Every interface (the ROS 2 default, `SUBNET`).
    Subnet,
    /// Loopback only: peers on this machine.
    Localhost,
}

/// The range the environment asks for, plus warnings about what cannot be honoured. Values
/// are read as ROS 2 reads them: the range name in capitals, `ROS_LOCALHOST_ONLY=1` only when
/// no range is set. Errors name the variable and value.
pub fn from_env_values(
    range: Option<&str>,
    localhost_only: Option<&str>,
    static_peers: Option<&str>,
) -> Result<(DiscoveryRange, Vec<String>)> {
    let mut warnings = Vec::new();
    let chosen = match range.map(str::trim).filter(|v| !v.is_empty()) {
        Some("SUBNET" | "SYSTEM_DEFAULT") => DiscoveryRange::Subnet,
        Some("LOCALHOST") => DiscoveryRange::Localhost,
        Some("OFF") => {
            warnings.push(
                "ROS_AUTOMATIC_DISCOVERY_RANGE=OFF: RustDDS cannot turn discovery off; \
                 limiting it to this machine (LOCALHOST) instead"
                    .to_string(),
            );
            DiscoveryRange::Localhost
        }
        Some(other) => bail!(
            "ROS_AUTOMATIC_DISCOVERY_RANGE {other:?} is not one of SUBNET, LOCALHOST, OFF, \
             SYSTEM_DEFAULT"
        ),
        None => match localhost_only.map(str::trim) {
            Some("1") => DiscoveryRange::Localhost,
            Some("0" | "") | None => DiscoveryRange::Subnet,
            Some(other) => bail!("ROS_LOCALHOST_ONLY {other:?} is neither 0 nor 1"),
        },
    };
    if static_peers.is_some_and(|p| !p.trim().is_empty()) {
        warnings.push("ROS_STATIC_PEERS is set, but RustDDS cannot add static peers".to_string());
    }
    Ok((chosen, warnings))
}

/// [`from_env_values`] on this process's environment.
pub fn from_env() -> Result<(DiscoveryRange, Vec<String>)> {
    let var = |k: &str| std::env::var(k).ok();
    from_env_values(
        var("ROS_AUTOMATIC_DISCOVERY_RANGE").as_deref(),
        var("ROS_LOCALHOST_ONLY").as_deref(),
        var("ROS_STATIC_PEERS").as_deref(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use DiscoveryRange::{Localhost, Subnet};

    #[test]
    fn the_range_follows_ros_2_rules() {
        assert_eq!(from_env_values(None, None, None).unwrap(), (Subnet, vec![]));
        assert_eq!(from_env_values(None, Some("1"), None).unwrap().0, Localhost);
        assert_eq!(from_env_values(Some("SUBNET"), Some("1"), None).unwrap().0, Subnet);
        assert_eq!(from_env_values(Some("LOCALHOST"), None, None).unwrap().0, Localhost);
        let (range, warnings) = from_env_values(Some("OFF"), None, Some("10.0.0.2")).unwrap();
        assert_eq!((range, warnings.len()), (Localhost, 2));
        let err = from_env_values(Some("local"), None, None).unwrap_err().to_string();
        assert!(err.contains("\"local\""), "{err}");
        assert!(from_env_values(None, Some("yes"), None).is_err());
    }
}
