//! Undo as a mechanism: a multi-step change registers an undo step after each step that
//! succeeded; if the change fails (or its future is dropped) before [`Reverter::success`],
//! the steps run in reverse order.
//!
//! ```text
//!   let mut undo = Reverter::new();
//!   make_volume()?;  undo.add("delete the volume", || delete_volume());
//!   write_rows()?;   undo.add("delete the rows", || delete_rows());
//!   start()?;                       // fails: rows, then volume, are taken back
//!   undo.success();                 // or: nothing is taken back
//! ```
//!
//! Undo steps are synchronous and idempotent (deleting what is already gone is fine). A
//! step that fails is logged with what it was undoing; the next steps still run.

use crate::error::Failure;

type Step = Box<dyn FnOnce() -> Result<(), Failure> + Send>;

/// Undo steps, run in reverse when dropped unless the change succeeded.
#[derive(Default)]
pub struct Reverter {
    steps: Vec<(&'static str, Step)>,
}

impl std::fmt::Debug for Reverter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.steps.iter().map(|(what, _)| what))
            .finish()
    }
}

impl Reverter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the undo of a step that just succeeded; `what` says what it undoes.
    pub fn add(
        &mut self,
        what: &'static str,
        undo: impl FnOnce() -> Result<(), Failure> + Send + 'static,
    ) {
        self.steps.push((what, Box::new(undo)));
    }

    /// Registers an undo step that waits on something async (a helper process, the
    /// container's monitor). It blocks on the runtime the change ran on, which must be a
    /// multi-threaded one (berthd's).
    pub fn add_async<F, Fut>(&mut self, what: &'static str, undo: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), Failure>> + Send + 'static,
    {
        let handle = tokio::runtime::Handle::current();
        self.add(what, move || {
            if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread {
                return Err(Failure::internal(
                    "An undo step that waits cannot run on a current-thread runtime",
                ));
            }
            handle.block_on(undo())
        });
    }

    /// The change succeeded: nothing is undone.
    pub fn success(mut self) {
        self.steps.clear();
    }

    fn run(&mut self) {
        while let Some((what, undo)) = self.steps.pop() {
            if let Err(e) = undo() {
                tracing::warn!(undo = what, error = %crate::error::chain(&e), "Undo step failed");
            }
        }
    }
}

impl Drop for Reverter {
    fn drop(&mut self) {
        if self.steps.is_empty() {
            return;
        }
        // Undo steps may block (files, the database): off the async workers when on one.
        let multi = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi {
            tokio::task::block_in_place(|| self.run());
        } else {
            self.run();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    fn recorder() -> (Arc<Mutex<Vec<u8>>>, impl Fn(u8) -> Step) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        let step = move |n: u8| -> Step {
            let l = l.clone();
            Box::new(move || {
                l.lock().unwrap().push(n);
                if n == 2 {
                    Err(Failure::internal("undo 2 failed"))
                } else {
                    Ok(())
                }
            })
        };
        (log, step)
    }

    #[test]
    fn undoes_in_reverse_and_goes_on_after_a_failed_step() {
        let (log, step) = recorder();
        {
            let mut r = Reverter::new();
            for n in 1..=3 {
                let s = step(n);
                r.add("step", s);
            }
        }
        assert_eq!(*log.lock().unwrap(), vec![3, 2, 1]);
    }

    #[test]
    fn success_undoes_nothing() {
        let (log, step) = recorder();
        let mut r = Reverter::new();
        r.add("step", step(1));
        r.success();
        assert!(log.lock().unwrap().is_empty());
    }
}
