//! Where the host's events go out: to the log writer as they happen, and to the event
//! descriptor, which is readable exactly while undrained events wait.

use std::os::fd::AsRawFd;
use std::sync::Arc;

use crate::events::EventQueue;
use crate::logging::Logger;
use crate::os::Flag;

pub struct EventsOut {
    /// Readable while the host's event queue holds events.
    ready: Flag,
    flagged: bool,
    pub logger: Option<Arc<Logger>>,
}

impl EventsOut {
    pub fn new() -> std::io::Result<EventsOut> {
        Ok(EventsOut {
            ready: Flag::new()?,
            flagged: false,
            logger: None,
        })
    }

    pub fn fd(&self) -> i32 {
        self.ready.fd().as_raw_fd()
    }

    /// Passes new events to the log writer, and makes the event fd readable exactly while the
    /// queue holds events.
    pub fn sync(&mut self, queue: &mut EventQueue) {
        let tapped = queue.take_tapped();
        if let Some(logger) = &self.logger {
            for event in &tapped {
                logger.log(event);
            }
        }
        let waiting = !queue.is_empty();
        if waiting != self.flagged {
            if waiting {
                self.ready.set();
            } else {
                self.ready.clear();
            }
            self.flagged = waiting;
        }
    }
}
