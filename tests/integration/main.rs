//! Integration tests: the real `converge` binary against a temporary `--root`, one module per
//! topic (ripgrep's layout: one test binary).

mod support;

mod accounts;
mod atomicity;
mod cli;
mod commands;
mod convergence;
mod errors;
mod files;
mod modules;
mod nginx;
mod nginx_e2e;
mod paths;
mod plan_output;
mod records;
mod remote;
mod rollback;
mod safety;
mod saved_plans;
mod scenario_e2e;
mod schema;
mod systemd_e2e;
mod units_offline;
mod virtualenv;
mod vm_e2e;
