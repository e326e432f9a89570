//! Stage instances side by side: a model's seeds, and the models `reproduce` trains, run on
//! `pipeline.jobs` workers at once, each on its share of the threads.
//!
//! One training does not keep two cores busy: its recurrent and per-step products are small
//! and split poorly (the fused model ran 1.68x faster on 2 threads than on 1, GRU4Rec
//! 1.34x), so two trainings on one thread each finish sooner than the same two one after the
//! other on both. Results do not depend on it: a training gives the same weights on any number
//! of threads. A later seed that takes its epochs from the first seed's training
//! (`model.refit`) waits for it; first seeds are started first so that their later seeds are
//! ready early. A job with nothing beside it (nothing running, nothing else ready) gets every
//! thread; none can become ready while it runs, so the cores are never oversubscribed.

use std::sync::{Condvar, Mutex};
use std::time::Instant;

use anyhow::Result;
use segue_core::Progress;

use crate::cache::Manifest;
use crate::stages::{Resolved, Runner, ToBuild, split_instance};

/// A stage instance of a group: built in this run, or fresh.
#[derive(Debug)]
pub struct Ran {
    /// `train-ann/seed-1`, or the stage where it has no seeds.
    pub instance: String,
    /// Its artifact's manifest.
    pub manifest: Manifest,
    /// Wall time of its build in this run (0 when it was fresh).
    pub seconds: f64,
}

/// One instance to build and the job it waits for.
struct Job {
    instance: String,
    to_build: ToBuild,
    force: bool,
    /// The job whose artifact it reads (the first seed it takes its epochs from).
    after: Option<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Running,
    Done,
    Failed,
}

/// The workers' shared view.
struct Board {
    states: Vec<State>,
    running: usize,
    error: Option<anyhow::Error>,
    built: Vec<Option<Ran>>,
}

impl Board {
    fn ready(&self, jobs: &[Job], i: usize) -> bool {
        self.states[i] == State::Waiting
            && jobs[i].after.is_none_or(|a| self.states[a] == State::Done)
    }
}

impl Runner<'_> {
    /// Runs every instance of `stages` (their upstream must have run; `force(stage)`: rebuild
    /// even when fresh), up to `pipeline.jobs` at once, and returns them in stage and seed
    /// order. After a failure no new instance starts; those running finish, and the first
    /// error is returned.
    pub fn run_side_by_side(
        &mut self,
        stages: &[&str],
        force: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<Ran>> {
        // Every key first: a later seed's recipe names its first seed's key.
        let mut slots: Vec<std::result::Result<Ran, usize>> = Vec::new();
        let mut jobs: Vec<Job> = Vec::new();
        for stage in stages {
            for instance in self.instances(stage) {
                match self.resolve(&instance, force(stage))? {
                    Resolved::Fresh(m) => {
                        slots.push(Ok(Ran { instance, manifest: *m, seconds: 0.0 }))
                    }
                    Resolved::Build(to_build) => {
                        let (st, seed) = split_instance(&instance);
                        let after = self
                            .epochs_from(st, seed)
                            .and_then(|first| jobs.iter().position(|j| j.instance == first));
                        slots.push(Err(jobs.len()));
                        jobs.push(Job {
                            instance,
                            to_build: *to_build,
                            force: force(stage),
                            after,
                        });
                    }
                }
            }
        }
        let mut built = self.build_jobs(&jobs)?;
        Ok(slots
            .into_iter()
            .map(|s| s.unwrap_or_else(|i| built[i].take().expect("every job built")))
            .collect())
    }

    /// Builds `jobs` on up to `pipeline.jobs` workers; one result per job.
    fn build_jobs(&self, jobs: &[Job]) -> Result<Vec<Option<Ran>>> {
        let threads = self.pipeline.threads();
        let workers = self.pipeline.jobs().min(jobs.len()).max(1);
        let build = |job: &Job, threads: usize, log: &dyn Progress| -> Result<Ran> {
            let started = Instant::now();
            let manifest =
                self.build_logged(&job.instance, &job.to_build, job.force, threads, log)?;
            let seconds = started.elapsed().as_secs_f64();
            Ok(Ran { instance: job.instance.clone(), manifest, seconds })
        };
        if workers == 1 {
            // In order; a later seed comes after its first seed in stage order.
            return jobs.iter().map(|j| Ok(Some(build(j, threads, self.log)?))).collect();
        }
        let each = (threads / workers).max(1);
        // First seeds before the seeds that wait for them.
        let order: Vec<usize> = (0..jobs.len())
            .filter(|&i| jobs[i].after.is_none())
            .chain((0..jobs.len()).filter(|&i| jobs[i].after.is_some()))
            .collect();
        let board = Mutex::new(Board {
            states: vec![State::Waiting; jobs.len()],
            running: 0,
            error: None,
            built: (0..jobs.len()).map(|_| None).collect(),
        });
        let changed = Condvar::new();
        let lock = || board.lock().unwrap_or_else(|e| e.into_inner());
        let work = || {
            loop {
                let (i, threads) = {
                    let mut b = lock();
                    loop {
                        if b.error.is_some() || b.states.iter().all(|s| *s != State::Waiting) {
                            return;
                        }
                        let mut ready = order.iter().copied().filter(|&i| b.ready(jobs, i));
                        match ready.next() {
                            Some(i) => {
                                let alone = b.running == 0 && ready.next().is_none();
                                b.states[i] = State::Running;
                                b.running += 1;
                                break (i, if alone { threads } else { each });
                            }
                            None => b = changed.wait(b).unwrap_or_else(|e| e.into_inner()),
                        }
                    }
                };
                let job = &jobs[i];
                let lane = self.log.lane(&self.shown(&job.instance));
                let outcome = build(job, threads, &*lane);
                let mut b = lock();
                b.running -= 1;
                match outcome {
                    Ok(ran) => {
                        b.states[i] = State::Done;
                        b.built[i] = Some(ran);
                    }
                    Err(e) => {
                        b.states[i] = State::Failed;
                        b.error.get_or_insert(e);
                    }
                }
                changed.notify_all();
            }
        };
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(work);
            }
        });
        let b = board.into_inner().unwrap_or_else(|e| e.into_inner());
        match b.error {
            Some(e) => Err(e),
            None => Ok(b.built),
        }
    }
}
