//! How far DDS discovery reaches, from the environment variables ROS 2 nodes read:
//! `ROS_AUTOMATIC_DISCOVERY_RANGE` (Iron and later), `ROS_LOCALHOST_ONLY` (Humble; deprecated
//! since), and `ROS_STATIC_PEERS`.
//!
//! RustDDS can limit the interfaces it uses for multicast and advertises to peers, which is
//! what LOCALHOST needs. It cannot turn discovery off or add static peers, so `OFF` is served
//! as LOCALHOST and `ROS_STATIC_PEERS` is ignored, each with a warning.

/// The reach this process's DDS participant gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoveryRange {
    /// Every interface (the ROS 2 default, `SUBNET`).
    Subnet,
    /// Loopback only: peers on this machine.
    Localhost,
}

/// The range the environment asks for, plus warnings about what cannot be honoured, following
/// rcl: `ROS_LOCALHOST_ONLY=1` (exactly) wins and means LOCALHOST; otherwise
/// `ROS_AUTOMATIC_DISCOVERY_RANGE` decides, unset or empty meaning the default (SUBNET), and a
/// value rcl does not know is warned about and read as LOCALHOST, the safe side.
pub fn from_env_values(
    range: Option<&str>,
    localhost_only: Option<&str>,
    static_peers: Option<&str>,
) -> (DiscoveryRange, Vec<String>) {
    let mut warnings = Vec::new();
    let chosen = if localhost_only == Some("1") {
        if range.is_some_and(|r| !r.is_empty()) {
            warnings.push(
                "ROS_LOCALHOST_ONLY=1 is deprecated but still honoured: it overrides \
                 ROS_AUTOMATIC_DISCOVERY_RANGE"
                    .to_string(),
            );
        }
        DiscoveryRange::Localhost
    } else {
        match range {
            None | Some("" | "SUBNET" | "SYSTEM_DEFAULT") => DiscoveryRange::Subnet,
            Some("LOCALHOST") => DiscoveryRange::Localhost,
            Some("OFF") => {
                warnings.push(
                    "ROS_AUTOMATIC_DISCOVERY_RANGE=OFF: RustDDS cannot turn discovery off; \
                     limiting it to this machine (LOCALHOST) instead"
                        .to_string(),
                );
                DiscoveryRange::Localhost
            }
            Some(other) => {
                warnings.push(format!(
                    "ROS_AUTOMATIC_DISCOVERY_RANGE {other:?} is not one of SUBNET, LOCALHOST, \
                     OFF, SYSTEM_DEFAULT; assuming LOCALHOST, as rcl does"
                ));
                DiscoveryRange::Localhost
            }
        }
    };
    if static_peers.is_some_and(|p| !p.trim().is_empty()) {
        warnings.push("ROS_STATIC_PEERS is set, but RustDDS cannot add static peers".to_string());
    }
    (chosen, warnings)
}

/// [`from_env_values`] on this process's environment.
pub fn from_env() -> (DiscoveryRange, Vec<String>) {
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
    fn the_range_follows_rcl() {
        assert_eq!(from_env_values(None, None, None), (Subnet, vec![]));
        assert_eq!(from_env_values(None, Some("1"), None).0, Localhost);
        let (range, warnings) = from_env_values(Some("SUBNET"), Some("1"), None);
        assert_eq!((range, warnings.len()), (Localhost, 1), "LOCALHOST_ONLY=1 is honoured");
        assert_eq!(from_env_values(None, Some("2"), None).0, Subnet, "only 1 turns it on");
        assert_eq!(from_env_values(Some("LOCALHOST"), None, None).0, Localhost);
        assert_eq!(from_env_values(Some(""), Some("0"), None).0, Subnet);
        let (range, warnings) = from_env_values(Some("OFF"), None, Some("10.0.0.2"));
        assert_eq!((range, warnings.len()), (Localhost, 2));
        let (range, warnings) = from_env_values(Some("local"), None, None);
        assert_eq!(range, Localhost, "an unknown value is read as the safe side");
        assert!(warnings[0].contains("\"local\""), "{warnings:?}");
    }
}
