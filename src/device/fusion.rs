//! `--fuse` and `[resources] fuse`: how many runs of a sweep train as one fused model on one
//! device ([`crate::train::group`]).
//!
//! `auto` is what measured fastest on each kind of device (docs/benchmarks.md, "Fused runs"):
//! on the 2-core CPU a fused group trained fewer images per second than its runs one after
//! the other (flex 0.54–1.02×, libtorch's CPU 0.58–0.86×), so CPUs do not fuse; a GPU, which
//! one 48×48 run keeps about 10 % busy, fuses up to [`GPU_AUTO`] runs.

use super::DeviceSpec;
use serde::Deserialize;
use std::fmt;
use std::str::FromStr;

/// The largest group `auto` forms on a GPU. The PyTorch fusion of the baseline on an H200 gave
/// 8× the images per second of one run with 8 members and 9.8× with 32: past 16, a group
/// mostly waits longer for its slowest member to finish.
pub const GPU_AUTO: usize = 16;

/// How runs fuse: by device kind, at most `N` per group, or never.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fuse {
    #[default]
    Auto,
    /// At most this many runs per group (1 = no fusion).
    AtMost(usize),
    Off,
}

impl Fuse {
    /// The most runs one group on `device` may hold (1: each run alone).
    pub fn group_size(self, device: DeviceSpec) -> usize {
        match self {
            Fuse::Off => 1,
            Fuse::AtMost(n) => n.max(1),
            Fuse::Auto => match device {
                DeviceSpec::Cuda(_) => GPU_AUTO,
                DeviceSpec::Flex | DeviceSpec::TchCpu => 1,
            },
        }
    }
}

impl fmt::Display for Fuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fuse::Auto => f.write_str("auto"),
            Fuse::AtMost(n) => write!(f, "{n}"),
            Fuse::Off => f.write_str("off"),
        }
    }
}

const EXPECTED: &str = "expected auto, a number of runs per group (2 or more), or off";

/// `--fuse auto | N | off` (`false` and `1` mean off too).
impl FromStr for Fuse {
    type Err = String;

    fn from_str(s: &str) -> Result<Fuse, String> {
        match s.trim() {
            "auto" | "true" => Ok(Fuse::Auto),
            "off" | "false" | "no" => Ok(Fuse::Off),
            n => match n.parse::<usize>() {
                Ok(0) => Err(format!("{n} runs per group trains nothing: {EXPECTED}")),
                Ok(1) => Ok(Fuse::Off),
                Ok(n) => Ok(Fuse::AtMost(n)),
                Err(_) => Err(format!("{n:?}: {EXPECTED}")),
            },
        }
    }
}

/// `fuse = "auto" | N | false` in a sweep file.
impl<'de> Deserialize<'de> for Fuse {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Fuse, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Toml {
            Switch(bool),
            Size(i64),
            Word(String),
        }
        let parsed = match Toml::deserialize(d)? {
            Toml::Switch(true) => Ok(Fuse::Auto),
            Toml::Switch(false) => Ok(Fuse::Off),
            Toml::Size(n) if n < 0 => Err(format!("{n}: {EXPECTED}")),
            Toml::Size(n) => n.to_string().parse(),
            Toml::Word(w) => w.parse(),
        };
        parsed.map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_fuses_on_gpus_only_and_a_number_caps_every_device() {
        assert_eq!(Fuse::Auto.group_size(DeviceSpec::Flex), 1);
        assert_eq!(Fuse::Auto.group_size(DeviceSpec::TchCpu), 1);
        assert_eq!(Fuse::Auto.group_size(DeviceSpec::Cuda(1)), GPU_AUTO);
        assert_eq!(Fuse::AtMost(4).group_size(DeviceSpec::Flex), 4);
        assert_eq!(Fuse::Off.group_size(DeviceSpec::Cuda(0)), 1);
    }

    #[test]
    fn flags_and_toml_say_the_same_things() {
        for (text, fuse) in [
            ("auto", Fuse::Auto),
            ("off", Fuse::Off),
            ("false", Fuse::Off),
            ("1", Fuse::Off),
            ("8", Fuse::AtMost(8)),
        ] {
            assert_eq!(text.parse::<Fuse>(), Ok(fuse), "{text}");
        }
        assert!("0".parse::<Fuse>().unwrap_err().contains("trains nothing"));
        assert!("lots".parse::<Fuse>().unwrap_err().contains("\"lots\""));
        #[derive(Deserialize)]
        struct R {
            fuse: Fuse,
        }
        let read = |t: &str| toml::from_str::<R>(t).map(|r| r.fuse);
        assert_eq!(read("fuse = false").unwrap(), Fuse::Off);
        assert_eq!(read("fuse = true").unwrap(), Fuse::Auto);
        assert_eq!(read("fuse = \"auto\"").unwrap(), Fuse::Auto);
        assert_eq!(read("fuse = 6").unwrap(), Fuse::AtMost(6));
        assert!(
            read("fuse = -2")
                .unwrap_err()
                .to_string()
                .contains(EXPECTED)
        );
        assert!(
            read("fuse = 0")
                .unwrap_err()
                .to_string()
                .contains("trains nothing")
        );
    }
}
