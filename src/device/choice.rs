//! `--devices` and `[resources] devices`: which of the discovered devices a sweep uses.

use super::DeviceSpec;
use super::discover::Discovered;
use serde::{Deserialize, Serialize};

/// Which devices a sweep uses: `auto` (every GPU, else the CPU) or an explicit list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DeviceChoice {
    Named(String),
    List(Vec<String>),
}

/// A `--devices` that names nothing this machine can run on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DevicesError {
    #[error("--devices is empty: use auto, cpu, or a list like cuda:0,cuda:1")]
    Empty,
    #[error("--devices {text}: {why}")]
    Unknown { text: String, why: String },
    #[error("--devices {text}: no GPU cuda:{index} on this machine (found: {found})")]
    NoSuchGpu {
        text: String,
        index: usize,
        found: String,
    },
    #[error("--devices {text}: {part} is named twice")]
    Twice { text: String, part: String },
}

/// Parses `--devices auto | cpu | tch-cpu | cuda:0,cuda:1` against what was discovered.
pub fn choose(text: &str, found: &Discovered) -> Result<Vec<DeviceSpec>, DevicesError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DevicesError::Empty);
    }
    if text == "auto" {
        return Ok(if found.gpus.is_empty() {
            vec![DeviceSpec::auto_cpu()]
        } else {
            found
                .gpus
                .iter()
                .map(|g| DeviceSpec::Cuda(g.index))
                .collect()
        });
    }
    let mut out = Vec::new();
    for part in text.split(',') {
        let spec: DeviceSpec = part.parse().map_err(|e| DevicesError::Unknown {
            text: text.into(),
            why: e,
        })?;
        if let DeviceSpec::Cuda(index) = spec
            && !found.gpus.iter().any(|g| g.index == index)
        {
            return Err(DevicesError::NoSuchGpu {
                text: text.into(),
                index,
                found: if found.gpus.is_empty() {
                    "none".to_string()
                } else {
                    found
                        .gpus
                        .iter()
                        .map(|g| format!("cuda:{} {}", g.index, g.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            });
        }
        if out.contains(&spec) {
            return Err(DevicesError::Twice {
                text: text.into(),
                part: part.into(),
            });
        }
        out.push(spec);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_gpu() -> Discovered {
        Discovered::without_gpus(2)
    }

    #[test]
    fn without_a_gpu_auto_is_the_cpu() {
        assert_eq!(
            choose("auto", &no_gpu()).unwrap(),
            vec![DeviceSpec::auto_cpu()]
        );
    }

    #[test]
    fn nonsense_devices_are_refused_clearly() {
        let err = choose("gpu9000", &no_gpu()).unwrap_err().to_string();
        assert!(err.contains("gpu9000"), "{err}");
        assert!(choose("", &no_gpu()).is_err());
        let twice = choose("cpu,cpu", &no_gpu()).unwrap_err().to_string();
        assert!(twice.contains("twice"));
        if cfg!(feature = "tch") {
            assert!(
                choose("cuda:3", &no_gpu())
                    .unwrap_err()
                    .to_string()
                    .contains("no GPU cuda:3")
            );
        } else {
            let err = choose("cuda:0", &no_gpu()).unwrap_err().to_string();
            assert!(err.contains("tch"));
        }
    }
}
