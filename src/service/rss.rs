//! The resident memory of this process, read from `/proc` where the platform has it: start-up
//! logs how much building the index took.

/// Resident set size of this process, from `/proc/self/status` (Linux); `None` elsewhere
/// or when it cannot be read.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    vm_rss(&status)
}

/// The `VmRSS:` line of a `/proc/*/status` text, in bytes.
fn vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vm_rss_line_is_read_in_bytes() {
        let status = "Name:\tempi\nVmPeak:\t  900 kB\nVmRSS:\t  1536 kB\nThreads:\t4\n";
        assert_eq!(vm_rss(status), Some(1536 * 1024));
        assert_eq!(vm_rss("Name:\tempi\n"), None);
        assert_eq!(vm_rss("VmRSS:\tlots kB\n"), None);
    }
}
