//! A listener's open connections, so that a full listener cannot lock clients out: at the
//! global cap (`connections_max`) or at one source address's cap (`connections_per_ip_max`),
//! the connection that has been idle the longest, with no request in flight, is closed to admit
//! the newcomer; only when every connection in that scope is busy is the newcomer refused.
//!
//! Why evict rather than refuse: on a first-come-first-served listener, 1,024 sockets that
//! connect and then say nothing (or send a size and no body) keep every real client out until
//! the idle timeout (reliability probe 2b). Kafka's selector likewise closes its least recently
//! used idle connections; here the eviction happens at admission, so a newcomer never waits.
//! Which one goes: first the connections that have never had a request answered, oldest
//! first (sockets that connect and say nothing, or send a size and withhold the body: a
//! partial frame is not activity), then the one whose last answer is the oldest. So clients
//! that talk outlive sockets that never did, and among talking clients the least recently
//! active goes, as with Kafka. A request in flight (read and not yet answered, a long-polling
//! fetch or a join included) makes a connection busy: never evicted. A
//! per-address cap alone cannot do this on loopback or behind NAT, where every client shares
//! one address; both caps use the same rule.
//!
//! The registry's mutex is taken only to admit and to forget a connection; a connection marks
//! itself busy or idle with atomics on its own [`Slot`].
//!
//! Both listeners use it: the Kafka listener here, the HTTP listener in `evident-server`
//! (`serve/connections.rs`), where a request is in flight until its response body is written,
//! so a live subscription is never evicted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::time::Instant;

/// A connection cap: the one at which a newcomer was refused (every connection in its scope
/// busy), or at which an idle connection was evicted to admit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// The listener's cap on all its connections.
    Listener,
    /// The cap on one source address's connections.
    Address,
}

/// One connection's activity, shared between its task and the registry.
#[derive(Debug)]
struct Activity {
    ip: IpAddr,
    /// Requests read and not yet answered on the wire.
    in_flight: AtomicUsize,
    /// When the last request was answered (written): milliseconds since the registry's epoch;
    /// 0 while none was.
    last_active_ms: AtomicU64,
    /// Told to close by an eviction.
    evicted: Notify,
}

/// The open connections.
#[derive(Debug)]
pub struct Connections {
    max: usize,
    per_ip_max: usize,
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Activity>>>,
}

impl Connections {
    /// A registry admitting at most `max` connections, `per_ip_max` from one address.
    pub fn new(max: usize, per_ip_max: usize) -> Self {
        Self {
            max: max.max(1),
            per_ip_max: per_ip_max.max(1),
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Milliseconds since the epoch, from 1 (0 means "never answered").
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX).saturating_add(1)
    }

    /// Admits a connection from `ip`, evicting the longest-idle one of its scope when a cap is
    /// reached; returns the new connection's slot and the cap at which one was evicted, if any.
    /// Refused with the cap whose connections are all busy.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<(Slot, Option<Cap>), Cap> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let mut evicted = None;
        let from_ip = open.values().filter(|a| a.ip == ip).count();
        if from_ip >= self.per_ip_max {
            Self::evict_oldest_idle(&mut open, Some(ip)).ok_or(Cap::Address)?;
            evicted = Some(Cap::Address);
        } else if open.len() >= self.max {
            Self::evict_oldest_idle(&mut open, None).ok_or(Cap::Listener)?;
            evicted = Some(Cap::Listener);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity {
            ip,
            in_flight: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(0),
            evicted: Notify::new(),
        });
        open.insert(id, activity.clone());
        Ok((Slot { id, activity, registry: self.clone() }, evicted))
    }

    /// Removes the connection (of `ip` if given) to evict, with nothing in flight: never
    /// answered, oldest (ids grow with time) first, then answered the longest ago; and tells it
    /// to close. None if every candidate is busy.
    fn evict_oldest_idle(open: &mut HashMap<u64, Arc<Activity>>, ip: Option<IpAddr>) -> Option<()> {
        let (&id, _) = open
            .iter()
            .filter(|(_, a)| ip.is_none_or(|ip| a.ip == ip) && a.in_flight.load(Ordering::Acquire) == 0)
            .min_by_key(|(id, a)| (a.last_active_ms.load(Ordering::Relaxed), **id))?;
        let victim = open.remove(&id)?;
        // `notify_one` stores a permit, so the connection sees it even if it is not waiting yet.
        victim.evicted.notify_one();
        Some(())
    }

    /// Connections open now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// A connection's place in the registry; dropping it forgets the connection.
#[derive(Debug)]
pub struct Slot {
    id: u64,
    activity: Arc<Activity>,
    registry: Arc<Connections>,
}

impl Slot {
    /// A request was read: the connection is busy until it is answered.
    pub fn request_started(&self) {
        self.activity.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// Resolves when the connection was evicted to admit another.
    pub async fn evicted(&self) {
        self.activity.evicted.notified().await;
    }

    /// No request in flight now: what the eviction checked, checked again by a connection that
    /// learns of its eviction later (a request may have arrived meanwhile).
    pub fn is_idle(&self) -> bool {
        self.activity.in_flight.load(Ordering::Acquire) == 0
    }

    /// A handle for the task writing replies (it finishes requests).
    pub fn tracker(&self) -> Tracker {
        Tracker { activity: self.activity.clone(), registry: self.registry.clone() }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.registry.open.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
    }
}

/// Marks requests of one connection finished, from the task writing its replies.
#[derive(Debug)]
pub struct Tracker {
    activity: Arc<Activity>,
    registry: Arc<Connections>,
}

impl Tracker {
    /// A request was answered on the wire (or will never be).
    pub fn request_finished(&self) {
        self.activity.last_active_ms.store(self.registry.now_ms(), Ordering::Relaxed);
        self.activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn answer(slot: &Slot) {
        slot.request_started();
        slot.tracker().request_finished();
    }

    async fn was_evicted(slot: &Slot) -> bool {
        tokio::time::timeout(std::time::Duration::from_millis(1), slot.evicted()).await.is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_silent_connections_go_first_then_the_least_recently_answered() {
        let step = std::time::Duration::from_millis(10);
        let reg = Arc::new(Connections::new(4, 4));
        let (talked_long_ago, _) = reg.admit(ip(1)).expect("1");
        answer(&talked_long_ago);
        tokio::time::advance(step).await;
        let (silent_busy, _) = reg.admit(ip(1)).expect("2");
        silent_busy.request_started();
        let (silent, _) = reg.admit(ip(1)).expect("3");
        let (talked_recently, _) = reg.admit(ip(1)).expect("4");
        tokio::time::advance(step).await;
        answer(&talked_recently);
        // The silent idle one goes (the older silent one is busy); the newcomer is admitted.
        let (newcomer, evicted) = reg.admit(ip(2)).expect("admitted by eviction");
        assert_eq!(evicted, Some(Cap::Listener));
        assert_eq!(reg.len(), 4);
        assert!(was_evicted(&silent).await);
        // Then the newcomer, silent so far, before either talking connection.
        answer(&newcomer);
        tokio::time::advance(step).await;
        answer(&talked_recently);
        // Now the least recently answered: talked_long_ago.
        let (_fifth, evicted) = reg.admit(ip(3)).expect("admitted");
        assert_eq!(evicted, Some(Cap::Listener));
        assert!(was_evicted(&talked_long_ago).await);
        assert!(!was_evicted(&talked_recently).await && !was_evicted(&newcomer).await);
        assert!(!was_evicted(&silent_busy).await);
        drop(silent); // already forgotten: dropping it must not remove another
        assert_eq!(reg.len(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn every_connection_busy_refuses_the_newcomer() {
        let reg = Arc::new(Connections::new(2, 2));
        let (a, _) = reg.admit(ip(1)).expect("a");
        let (b, _) = reg.admit(ip(2)).expect("b");
        a.request_started();
        b.request_started();
        assert_eq!(reg.admit(ip(3)).map(|_| ()), Err(Cap::Listener));
        b.tracker().request_finished();
        assert!(reg.admit(ip(3)).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn the_per_address_cap_evicts_within_that_address_only() {
        let reg = Arc::new(Connections::new(10, 2));
        let (other, _) = reg.admit(ip(9)).expect("other address");
        tokio::time::advance(std::time::Duration::from_millis(10)).await;
        let (first, _) = reg.admit(ip(1)).expect("first");
        let (second, _) = reg.admit(ip(1)).expect("second");
        second.request_started();
        let (third, evicted) = reg.admit(ip(1)).expect("third evicts the idle one of 10.0.0.1");
        assert_eq!(evicted, Some(Cap::Address));
        tokio::time::timeout(std::time::Duration::from_millis(1), first.evicted()).await.expect("first went");
        assert!(tokio::time::timeout(std::time::Duration::from_millis(1), other.evicted()).await.is_err());
        // Both of 10.0.0.1's remaining connections are busy now.
        third.request_started();
        assert_eq!(reg.admit(ip(1)).map(|_| ()), Err(Cap::Address));
    }
}
