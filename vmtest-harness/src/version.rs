//! Kernel versions: what `min_kernel` and `max_kernel` compare, and what
//! [`kernel_version`] says of the running kernel.

use std::cmp::Ordering;
use std::fmt;

/// A kernel's version, as its release string starts (`6.1.0-57-amd64` is
/// 6.1.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KernelVersion {
    /// `6` in 6.1.90.
    pub major: u32,
    /// `1` in 6.1.90.
    pub minor: u32,
    /// `90` in 6.1.90.
    pub patch: u32,
}

impl KernelVersion {
    /// The version a release string (`uname -r`) starts with.
    pub fn from_release(release: &str) -> Option<KernelVersion> {
        let mut numbers = release
            .split(|c: char| !c.is_ascii_digit())
            .take_while(|part| !part.is_empty())
            .map(|part| part.parse::<u32>().ok());
        Some(KernelVersion {
            major: numbers.next()??,
            minor: numbers.next().flatten().unwrap_or(0),
            patch: numbers.next().flatten().unwrap_or(0),
        })
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The version of the kernel this runs on: inside a test, the guest's.
///
/// ```no_run
/// # use vmtest_harness::kernel_version;
/// if kernel_version().minor >= 12 {
///     // use what 6.12 has
/// }
/// ```
pub fn kernel_version() -> KernelVersion {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    KernelVersion::from_release(release.trim())
        .unwrap_or_else(|| panic!("cannot read the kernel's version from {release:?}"))
}

/// A bound as written (`"6.4"`): the parts given, compared alone, so that
/// `max_kernel = "6.11"` takes in every 6.11.x.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bound(Vec<u32>);

impl Bound {
    pub(crate) fn parse(text: &str) -> Option<Bound> {
        let parts: Option<Vec<u32>> = text.split('.').map(|part| part.parse().ok()).collect();
        parts
            .filter(|parts| (1..=3).contains(&parts.len()))
            .map(Bound)
    }

    /// How `version`, cut to as many parts as the bound has, compares to it.
    fn compare(&self, version: KernelVersion) -> Ordering {
        let parts = [version.major, version.minor, version.patch];
        parts[..self.0.len()].cmp(&self.0)
    }
}

/// Why a test does not run on a kernel of `release`, if it does not.
pub(crate) fn outside(release: &str, min: Option<&str>, max: Option<&str>) -> Option<String> {
    let version = KernelVersion::from_release(release)?;
    if let Some((text, bound)) = min.and_then(|text| Some((text, Bound::parse(text)?))) {
        if bound.compare(version) == Ordering::Less {
            return Some(format!(
                "its kernel is {release}, older than min_kernel {text}"
            ));
        }
    }
    if let Some((text, bound)) = max.and_then(|text| Some((text, Bound::parse(text)?))) {
        if bound.compare(version) == Ordering::Greater {
            return Some(format!(
                "its kernel is {release}, newer than max_kernel {text}"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_read_as_versions() {
        let version = KernelVersion::from_release("6.1.0-57-amd64").unwrap();
        assert_eq!((version.major, version.minor, version.patch), (6, 1, 0));
        assert_eq!(
            KernelVersion::from_release("6.12.117+deb12-amd64")
                .unwrap()
                .to_string(),
            "6.12.117"
        );
        assert_eq!(
            KernelVersion::from_release("6.8-rc1").unwrap().to_string(),
            "6.8.0"
        );
        assert_eq!(KernelVersion::from_release("garbage"), None);
    }

    #[test]
    fn bounds_take_in_what_they_name() {
        assert_eq!(outside("6.12.117+deb12-amd64", Some("6.4"), None), None);
        assert_eq!(
            outside("6.1.0-57-amd64", Some("6.4"), None).as_deref(),
            Some("its kernel is 6.1.0-57-amd64, older than min_kernel 6.4")
        );
        assert_eq!(outside("6.11.9", None, Some("6.11")), None);
        assert!(outside("6.12.1", None, Some("6.11"))
            .unwrap()
            .contains("newer than max_kernel 6.11"));
        assert_eq!(outside("6.1.90", Some("6.1.90"), Some("6.1.90")), None);
        assert!(outside("6.1.89", Some("6.1.90"), None).is_some());
    }
}
