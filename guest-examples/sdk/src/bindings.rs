//! The generated wit-bindgen bindings.
//!
//! A component must export exactly the interfaces its guest implements, and
//! wit-component builds the component from the `component-type` custom
//! sections it finds in the core module, merging them. With
//! `pub_export_macro`, wit-bindgen keeps only a world's *imports* in this
//! crate and emits the section that declares its exports from the export
//! macro, in the guest's crate, so only the worlds a guest exports reach its
//! component.
//!
//! Each exported interface of `wasmsink:plugin@0.1.0` therefore gets a
//! one-export world of its own (wit-bindgen would generate a clashing
//! `#[macro_export]` macro if two worlds exported the same interface):
//!
//! * [`lifecycle`]: imports `logging`, exports `lifecycle` (every guest);
//! * [`transformer`]: exports `transformer`; owns the shared `types`;
//! * [`retry`]: exports `retry-policy`.
//!
//! A transform guest is `lifecycle` + `transformer` (the `transform-plugin`
//! world), a decide guest `lifecycle` + `retry` (`retry-plugin`), and a
//! guest with both is `connector-plugin`.

/// `logging` import and `lifecycle` export.
pub mod lifecycle {
    wit_bindgen::generate!({
        path: "../../wit",
        inline: "
            package wasmsink:guest-sdk;
            world lifecycle-export {
                import wasmsink:plugin/logging@0.1.0;
                export wasmsink:plugin/lifecycle@0.1.0;
            }
        ",
        world: "wasmsink:guest-sdk/lifecycle-export",
        pub_export_macro: true,
        export_macro_name: "export_lifecycle",
        default_bindings_module: "$crate::bindings::lifecycle",
        generate_all,
    });
}

/// `transformer` export and the contract's shared `types`.
pub mod transformer {
    wit_bindgen::generate!({
        path: "../../wit",
        inline: "
            package wasmsink:guest-sdk;
            world transformer-export {
                export wasmsink:plugin/transformer@0.1.0;
            }
        ",
        world: "wasmsink:guest-sdk/transformer-export",
        pub_export_macro: true,
        export_macro_name: "export_transformer",
        default_bindings_module: "$crate::bindings::transformer",
        generate_unused_types: true,
        generate_all,
    });
}

/// `retry-policy` export; its types are those of [`transformer`].
pub mod retry {
    wit_bindgen::generate!({
        path: "../../wit",
        inline: "
            package wasmsink:guest-sdk;
            world retry-policy-export {
                export wasmsink:plugin/retry-policy@0.1.0;
            }
        ",
        world: "wasmsink:guest-sdk/retry-policy-export",
        pub_export_macro: true,
        export_macro_name: "export_retry_policy",
        default_bindings_module: "$crate::bindings::retry",
        with: {
            "wasmsink:plugin/types@0.1.0": crate::bindings::transformer::wasmsink::plugin::types,
        },
        generate_all,
    });
}
