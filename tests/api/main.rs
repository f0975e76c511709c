//! Integration tests: real Postgres, real sockets, real clients. One binary;
//! every test gets its own database and pgherald instance.

mod capture;
mod clients;
mod config;
mod converge;
mod cost;
mod cross_site;
mod delivery;
mod filter;
mod guarantees;
mod helpers;
mod hostile;
mod http;
mod limits;
mod migrate;
mod own_schema;
mod protocol;
mod relay;
mod resilience;
mod rls;
mod rls_fidelity;
mod smoke;
mod tables;
mod tls;
mod tokens;
mod typed;
mod upgrade;
