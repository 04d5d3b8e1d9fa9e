//! The scheduler of a backfill job, as a sans-IO state machine.
//!
//! This crate owns every decision of a job: how fragments are split into
//! tasks ([`plan`]) and how large they are ([`batch`] sizes them from the
//! UDF's time under `--batch-size auto`), in which order tasks go out
//! ([`plan::shuffle`]), which applier gets which task, when a fragment is
//! ready for its writer, when a group of written fragments is committed,
//! and when the job has succeeded or failed ([`Scheduler`]); [`sim`] runs
//! it on a virtual clock, for jobs too large to run here. It does no I/O,
//! owns no clock and spawns nothing:
//! like `quinn-proto`, it is driven from outside with
//! [`Scheduler::handle`]`(now, event)`, and the driver carries out what
//! [`Scheduler::poll_command`] returns. `cargo tree -p leman-scheduler` shows
//! no tokio, quinn, ractor or lance.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use leman_scheduler::{Command, Event, FragmentInput, JobConfig, Scheduler};
//!
//! let now = Instant::now();
//! let fragments = vec![FragmentInput::new(0, 100), FragmentInput::new(1, 100)];
//! let config = JobConfig { batch_size: 50, ..JobConfig::default() };
//! let mut scheduler = Scheduler::new(now, config, fragments).unwrap();
//! scheduler.handle(now, Event::ApplierReady { applier: 0, slots: 1 });
//! let Some(Command::Assign { applier: 0, task, .. }) = scheduler.poll_command() else { panic!() };
//! assert_eq!(task.rows, 0..50);
//! ```

pub mod batch;
mod error;
mod machine;
pub mod plan;
pub mod record;
pub mod sim;

pub use batch::AutoBatch;
pub use error::PlanError;
pub use machine::{ApplierId, Command, Event, JobConfig, MIN_ROWS_FOR_FRACTION, Scheduler, SkipBudget, TaskStats};
pub use plan::{FragmentInput, FragmentStart, Task, TaskId};
pub use record::{JobCost, JobFailure, JobRecord, JobStatus, Progress, Starter, Summary};
