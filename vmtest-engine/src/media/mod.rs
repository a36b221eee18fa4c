//! Boot media and the kernels they are made from: kernel images read and
//! extracted, their modules found, the initramfs written ([`prepare`]);
//! and kernels fetched by URL ([`supply`]).

pub(crate) mod bzimage;
mod elf;
pub(crate) mod guest;
mod image_error;
mod initramfs;
pub(crate) mod kernel_image;
pub(crate) mod modules;
pub(crate) mod prepare;
pub(crate) mod prepared;
pub(crate) mod supply;
#[cfg(test)]
pub(crate) mod test_kernels;
mod vmlinux;

pub(crate) use elf::{has_section, interpreter};
