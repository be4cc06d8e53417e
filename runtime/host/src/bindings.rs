//! The one host bindgen site: every world of `wit/` is generated here, sharing the
//! interface modules so that a type like `ObjectRef` exists once.

// Generated code: the macros emit items without docs.
#![allow(missing_docs)]

pub(crate) mod controller {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "controller",
        imports: { default: trappable },
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq, Eq, Hash],
    });
}

pub(crate) mod admission {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "admission",
        imports: { default: trappable },
        with: {
            "bosun:operator/types": super::controller::bosun::operator::types,
            "bosun:operator/cache": super::controller::bosun::operator::cache,
            "bosun:operator/log": super::controller::bosun::operator::log,
            "bosun:operator/clock": super::controller::bosun::operator::clock,
        },
    });
}

pub(crate) mod pod_agent {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "pod-agent",
        imports: { default: trappable },
        with: {
            "bosun:operator/types": super::controller::bosun::operator::types,
            "bosun:operator/log": super::controller::bosun::operator::log,
            "bosun:operator/clock": super::controller::bosun::operator::clock,
        },
    });
}

pub(crate) use controller::bosun::operator as iface;
