//! Decide: which bin each classified coin goes to.

use std::collections::BTreeMap;

use anyhow::{Result, bail};

/// The label-to-bin table plus the rule for unsure coins.
///
/// Invariant: every label the model can output maps to a bin (checked by
/// [`BinTable::check_labels`] when a model is loaded), so a confident coin never lacks a bin.
#[derive(Debug, Clone, PartialEq)]
pub struct BinTable {
    bins: BTreeMap<String, String>,
    reject_bin: String,
    threshold: f32,
}

/// Where one coin goes, and whether that is the reject bin because it was unsure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub bin: String,
    pub rejected: bool,
}

impl BinTable {
    /// Builds the table from `label:bin` entries (the `bin_table` parameter).
    pub fn parse(entries: &[String], reject_bin: &str, threshold: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&threshold) {
            bail!("confidence_threshold {threshold} is outside 0..1");
        }
        if reject_bin.trim().is_empty() {
            bail!("reject_bin is empty");
        }
        let mut bins = BTreeMap::new();
        for e in entries {
            let Some((label, bin)) = e.split_once(':') else {
                bail!("bin_table entry {e:?} is not of the form label:bin");
            };
            let (label, bin) = (label.trim(), bin.trim());
            if label.is_empty() || bin.is_empty() {
                bail!("bin_table entry {e:?} has an empty label or bin");
            }
            if bins.insert(label.to_string(), bin.to_string()).is_some() {
                bail!("bin_table names label {label:?} twice");
            }
        }
        Ok(Self { bins, reject_bin: reject_bin.to_string(), threshold: threshold as f32 })
    }

    /// Fails, naming them, when some of the model's labels have no bin.
    pub fn check_labels(&self, labels: &[String]) -> Result<()> {
        let missing: Vec<&str> =
            labels.iter().filter(|l| !self.bins.contains_key(*l)).map(String::as_str).collect();
        if !missing.is_empty() {
            bail!("bin_table has no bin for model labels {missing:?}");
        }
        Ok(())
    }

    /// The bin for a coin classified as `label` with `confidence`.
    pub fn decide(&self, label: &str, confidence: f32) -> Decision {
        match self.bins.get(label) {
            Some(bin) if confidence >= self.threshold => {
                Decision { bin: bin.clone(), rejected: false }
            }
            _ => Decision { bin: self.reject_bin.clone(), rejected: true },
        }
    }

    /// The bin unsure or unknown coins go to.
    pub fn reject_bin(&self) -> &str {
        &self.reject_bin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> BinTable {
        BinTable::parse(&["1e:euro".into(), " 2c : copper ".into()], "reject", 0.6).unwrap()
    }

    #[test]
    fn confident_coins_go_to_their_bin_and_unsure_ones_to_reject() {
        let t = table();
        assert_eq!(t.decide("1e", 0.6), Decision { bin: "euro".into(), rejected: false });
        assert_eq!(t.decide("2c", 0.9), Decision { bin: "copper".into(), rejected: false });
        assert_eq!(t.decide("1e", 0.59), Decision { bin: "reject".into(), rejected: true });
        assert_eq!(t.decide("5c", 0.99), Decision { bin: "reject".into(), rejected: true });
    }

    #[test]
    fn bad_tables_are_refused_with_the_entry() {
        let err = BinTable::parse(&["1e".into()], "r", 0.5).unwrap_err().to_string();
        assert!(err.contains("\"1e\""), "{err}");
        assert!(BinTable::parse(&["1e:a".into(), "1e:b".into()], "r", 0.5).is_err());
        assert!(BinTable::parse(&[], "r", 1.5).is_err());
        let err = table().check_labels(&["1e".into(), "50c".into()]).unwrap_err().to_string();
        assert!(err.contains("50c"), "{err}");
    }
}
