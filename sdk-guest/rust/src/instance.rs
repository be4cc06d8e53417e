//! The plugin instance `init` created, kept for the calls that follow.

use std::any::Any;
use std::cell::RefCell;
use std::rc::Rc;

thread_local! {
    // A component instance is single-threaded and implements one world, so one slot is
    // enough. `Rc` lets a call run without holding the `RefCell` borrow.
    static INSTANCE: RefCell<Option<Rc<dyn Any>>> = const { RefCell::new(None) };
}

/// Keeps the instance `init` returned, replacing any earlier one.
pub(crate) fn set<T: 'static>(instance: T) {
    INSTANCE.with(|slot| *slot.borrow_mut() = Some(Rc::new(instance)));
}

/// The instance `init` returned.
pub(crate) fn get<T: 'static>() -> Result<Rc<T>, String> {
    INSTANCE
        .with(|slot| slot.borrow().clone())
        .ok_or_else(|| "plugin not initialised: the host called it before `init`".to_owned())?
        .downcast::<T>()
        .map_err(|_| "plugin instance has an unexpected type".to_owned())
}
