//! Client connection limits for `edgecache serve`: how long a client has to send a request
//! head (which also closes idle keep-alive connections), and how many connections may be
//! open at once, in all and per client address. Without them, connections that send
//! nothing, or half a head, stay open until the file descriptors run out and nobody else is
//! served (nginx: `client_header_timeout` 60 s, `keepalive_timeout` 75 s; Varnish:
//! `timeout_idle` 5 s).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The `[connections]` section of the native configuration.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionLimits {
    /// A client must send a whole request head within this many ms, counted from the
    /// connection's start or from the end of the previous response: a connection that sends
    /// nothing, sends its head too slowly, or idles between requests is closed after it.
    /// Default 15,000.
    pub header_timeout_ms: u64,
    /// Most client connections open at once; more are closed as they are accepted. `0`
    /// (the default): half the open-file limit (which `edgecache serve` raises to its hard
    /// limit at start), at most 65,536, leaving the rest for origin and Redis connections
    /// and body files.
    pub max: usize,
    /// Most connections open at once from one client address. `0` (the default): a quarter
    /// of `max`, so one address can never hold every slot.
    pub max_per_client: usize,
    /// Send cached bodies of at least 16 KiB with `sendfile` from sealed in-memory copies
    /// ([`super::sendfile`]), as nginx's `sendfile on`: the kernel takes references to the
    /// pages rather than copying the bytes, so a byte costs less CPU. On loopback (a TLS
    /// terminator on the same host), `sendfile` moves fewer bytes per second per
    /// connection than copied writes do: `false` trades that CPU for that throughput
    /// (BENCHMARKS.md "Large objects"). Default `true`.
    pub sendfile: bool,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_timeout_ms: 15_000,
            max: 0,
            max_per_client: 0,
            sendfile: true,
        }
    }
}

/// The limits in force, with the automatic values worked out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// See [`ConnectionLimits::header_timeout_ms`].
    pub header_timeout: Duration,
    /// See [`ConnectionLimits::max`].
    pub max: usize,
    /// See [`ConnectionLimits::max_per_client`].
    pub max_per_client: usize,
    /// See [`ConnectionLimits::sendfile`].
    pub sendfile: bool,
}

impl ConnectionLimits {
    /// Checks the values; the error names the field.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(100..=3_600_000).contains(&self.header_timeout_ms) {
            return Err((
                "connections.header_timeout_ms",
                "must be 100 to 3,600,000 (ms)".into(),
            ));
        }
        if self.max != 0 && self.max_per_client > self.max {
            return Err((
                "connections.max_per_client",
                format!("must not exceed connections.max ({})", self.max),
            ));
        }
        Ok(())
    }

    /// The limits for a process that may open `open_files` file descriptors.
    pub fn resolve(&self, open_files: u64) -> Resolved {
        let max = match self.max {
            0 => usize::try_from(open_files / 2)
                .unwrap_or(usize::MAX)
                .clamp(16, 65_536),
            n => n,
        };
        let max_per_client = match self.max_per_client {
            0 => (max / 4).max(1),
            n => n,
        };
        Resolved {
            header_timeout: Duration::from_millis(self.header_timeout_ms),
            max,
            max_per_client,
            sendfile: self.sendfile,
        }
    }
}

/// Raises the soft limit on open files to the hard limit (as Go's runtime does) and returns
/// the limit in force; 1,024 if it cannot be read.
pub fn raise_open_file_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    if let (Some(current), Some(maximum)) = (limit.current, limit.maximum) {
        if maximum > current {
            let raised = rustix::process::Rlimit {
                current: Some(maximum),
                maximum: Some(maximum),
            };
            if setrlimit(Resource::Nofile, raised).is_ok() {
                return maximum;
            }
        }
    }
    limit.current.unwrap_or(1024)
}

/// The open-file limit in force now.
pub fn open_file_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1024)
}

/// Counts open client connections and admits new ones within the limits.
#[derive(Debug)]
pub struct Tracker {
    limits: Resolved,
    open: Mutex<Open>,
    refused: AtomicU64,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// An admitted connection's place; dropping it (when the connection ends) frees it.
#[derive(Debug)]
pub struct Slot {
    tracker: Arc<Tracker>,
    client: IpAddr,
}

/// Why a connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// [`Resolved::max`] connections are open.
    Full,
    /// [`Resolved::max_per_client`] connections from this address are open.
    ClientFull,
}

impl Tracker {
    /// A tracker enforcing `limits`.
    pub fn new(limits: Resolved) -> Arc<Tracker> {
        Arc::new(Tracker {
            limits,
            open: Mutex::default(),
            refused: AtomicU64::new(0),
        })
    }

    /// The limits it enforces.
    pub fn limits(&self) -> Resolved {
        self.limits
    }

    /// Admits a connection from `client`, or says why not (and counts the refusal).
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Result<Slot, Refusal> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let refusal = if open.total >= self.limits.max {
            Some(Refusal::Full)
        } else if open.per_client.get(&client).copied().unwrap_or(0) >= self.limits.max_per_client {
            Some(Refusal::ClientFull)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(refusal);
        }
        open.total += 1;
        *open.per_client.entry(client).or_default() += 1;
        Ok(Slot {
            tracker: self.clone(),
            client,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).total
    }

    /// Connections refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.tracker.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                open.per_client.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn admits_within_both_limits_and_frees_on_drop() {
        let tracker = Tracker::new(Resolved {
            header_timeout: Duration::from_secs(1),
            max: 3,
            max_per_client: 2,
            sendfile: true,
        });
        let a1 = tracker.admit(ip("10.0.0.1")).unwrap();
        let _a2 = tracker.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(
            tracker.admit(ip("10.0.0.1")).unwrap_err(),
            Refusal::ClientFull
        );
        let _b1 = tracker.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(tracker.admit(ip("10.0.0.3")).unwrap_err(), Refusal::Full);
        assert_eq!(tracker.refused(), 2);
        drop(a1);
        assert_eq!(tracker.open(), 2);
        assert!(tracker.admit(ip("10.0.0.3")).is_ok(), "a place was freed");
    }

    #[test]
    fn automatic_limits_follow_the_open_file_limit() {
        let limits = ConnectionLimits::default();
        let r = limits.resolve(1024);
        assert_eq!((r.max, r.max_per_client), (512, 128));
        assert_eq!(limits.resolve(1 << 30).max, 65_536);
        assert_eq!(limits.resolve(0).max, 16);
        let fixed = ConnectionLimits {
            max: 100,
            max_per_client: 10,
            ..limits.clone()
        };
        assert_eq!(fixed.resolve(1024).max_per_client, 10);
        assert!(limits.validate().is_ok());
        let bad = ConnectionLimits {
            header_timeout_ms: 0,
            ..limits.clone()
        };
        assert_eq!(
            bad.validate().unwrap_err().0,
            "connections.header_timeout_ms"
        );
        let bad = ConnectionLimits {
            max: 10,
            max_per_client: 11,
            ..limits
        };
        assert_eq!(bad.validate().unwrap_err().0, "connections.max_per_client");
    }
}
