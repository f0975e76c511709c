//! Integration tests: real Postgres, real sockets, real clients. One binary;
//! every test gets its own database and pgherald instance.

mod capture;
mod clients;
mod config;
mod delivery;
mod helpers;
mod http;
mod protocol;
mod resilience;
mod rls;
mod rls_fidelity;
mod smoke;
mod tables;
mod typed;
