//! How many console sessions each user may hold at once.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// Counts open sessions per user and refuses beyond a cap.
#[derive(Debug)]
pub struct SessionLimiter<U: Eq + Hash + Clone> {
    per_user: usize,
    open: Arc<Mutex<HashMap<U, usize>>>,
}

/// A session slot; dropping it frees the slot.
#[derive(Debug)]
pub struct SessionSlot<U: Eq + Hash + Clone> {
    user: U,
    open: Arc<Mutex<HashMap<U, usize>>>,
}

impl<U: Eq + Hash + Clone> SessionLimiter<U> {
    /// At most `per_user` sessions per user.
    pub fn new(per_user: usize) -> Self {
        Self {
            per_user,
            open: Arc::default(),
        }
    }

    /// A slot for `user`, unless they hold the maximum already.
    pub fn try_acquire(&self, user: &U) -> Option<SessionSlot<U>> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(user.clone()).or_default();
        if *count >= self.per_user {
            return None;
        }
        *count += 1;
        Some(SessionSlot {
            user: user.clone(),
            open: Arc::clone(&self.open),
        })
    }
}

impl<U: Eq + Hash + Clone> Drop for SessionSlot<U> {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_each_user_and_frees_on_drop() {
        let limiter = SessionLimiter::new(2);
        let a1 = limiter.try_acquire(&"a").unwrap();
        let _a2 = limiter.try_acquire(&"a").unwrap();
        assert!(limiter.try_acquire(&"a").is_none());
        let _b = limiter.try_acquire(&"b").unwrap();
        drop(a1);
        assert!(limiter.try_acquire(&"a").is_some());
    }
}
