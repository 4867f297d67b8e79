//! Build script: sets the shared library's SONAME and, under the `cuda` or `rocm` feature,
//! compiles `kernels/*.hip` into a static library linked into pagedkv.
//!
//! Writes only to OUT_DIR; never probes the machine's GPU; downloads nothing. Every input is
//! announced (rerun-if-changed / rerun-if-env-changed). With neither GPU feature no GPU
//! toolchain is touched. The intermediate objects keep stable names, `OUT_DIR/kernels/<file>.o`,
//! next to the compiler's resource report `OUT_DIR/kernels/<file>.log`, so CI can inspect them.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const KERNEL_DIR: &str = "kernels";
const DEFAULT_CUDA_ARCHS: &str = "sm_90";
const DEFAULT_AMD_TARGETS: &str = "gfx90a;gfx942;gfx1100";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let major = env::var("CARGO_PKG_VERSION_MAJOR").unwrap();
    let minor = env::var("CARGO_PKG_VERSION_MINOR").unwrap();
    // While 0.x every minor release may break the ABI, so the SONAME carries the minor too.
    let soname = if major == "0" { format!("libpagedkv.so.0.{minor}") } else { format!("libpagedkv.so.{major}") };
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    println!("cargo:rustc-env=PKV_SONAME={soname}");

    let cuda = env::var_os("CARGO_FEATURE_CUDA").is_some();
    let rocm = env::var_os("CARGO_FEATURE_ROCM").is_some();
    if cuda && rocm {
        // src/gpu/mod.rs stops the build with a compile_error! that says why.
        return;
    }
    if cuda {
        build_cuda();
    } else if rocm {
        build_rocm();
    }
}

/// Reads an environment variable and announces it as an input.
fn env_input(name: &str) -> Option<String> {
    println!("cargo:rerun-if-env-changed={name}");
    env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn out_dir() -> PathBuf {
    PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
}

/// The kernel sources (`kernels/*.hip`), sorted; headers are announced as inputs too.
fn kernel_sources() -> Vec<PathBuf> {
    let dir = Path::new(KERNEL_DIR);
    println!("cargo:rerun-if-changed={KERNEL_DIR}");
    let mut sources = Vec::new();
    for entry in fs::read_dir(dir).expect("kernels/ is part of the source tree") {
        let path = entry.expect("readable kernels/ entry").path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ext == "hip" || ext == "h" {
            println!("cargo:rerun-if-changed={}", path.display());
        }
        if ext == "hip" {
            sources.push(path);
        }
    }
    sources.sort();
    sources
}

/// Splits a target list written with `;`, `,` or spaces.
fn split_list(s: &str) -> Vec<String> {
    s.split([';', ',', ' ', '\t', '\n']).map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect()
}

fn runs(cmd: &Path) -> bool {
    Command::new(cmd).arg("--version").output().map(|o| o.status.success()).unwrap_or(false)
}

/// Compiles every source with `compiler <flags> <source> -o <object>`, two at a time at most (CI
/// has two cores), and returns the objects. Each compiler's output lands in `<object stem>.log`.
fn compile_all(sources: &[PathBuf], compiler: &Path, flags: &[String]) -> Vec<(PathBuf, String)> {
    let obj_dir = out_dir().join("kernels");
    fs::create_dir_all(&obj_dir).expect("create OUT_DIR/kernels");
    let jobs: Vec<(PathBuf, PathBuf)> = sources
        .iter()
        .map(|src| {
            let stem = src.file_stem().and_then(|s| s.to_str()).expect("UTF-8 kernel file name");
            (src.clone(), obj_dir.join(format!("{stem}.o")))
        })
        .collect();
    let mut results = Vec::new();
    for pair in jobs.chunks(2) {
        let children: Vec<_> = pair
            .iter()
            .map(|(src, obj)| {
                let mut cmd = Command::new(compiler);
                cmd.args(flags).arg(src).arg("-o").arg(obj);
                let shown = format!("{cmd:?}");
                let child = cmd
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap_or_else(|e| panic!("could not run {shown}: {e}"));
                (src.clone(), obj.clone(), shown, child)
            })
            .collect();
        for (src, obj, shown, child) in children {
            let output: Output = child.wait_with_output().unwrap_or_else(|e| panic!("waiting for {shown}: {e}"));
            let log = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
            fs::write(obj.with_extension("log"), &log).expect("write the compiler log into OUT_DIR");
            if !output.status.success() {
                panic!("compiling {} failed:\n{shown}\n{log}", src.display());
            }
            results.push((obj, log));
        }
    }
    results
}

/// Archives objects into `OUT_DIR/libpagedkv_kernels.a` and links it.
fn link_kernels(objects: &[(PathBuf, String)]) {
    let ar = env_input("AR").unwrap_or_else(|| "ar".to_string());
    let lib = out_dir().join("libpagedkv_kernels.a");
    let _ = fs::remove_file(&lib);
    let status =
        Command::new(&ar).arg("crs").arg(&lib).args(objects.iter().map(|(o, _)| o)).status().unwrap_or_else(|e| {
            panic!("could not run `{ar}` to archive the kernels: {e} (install binutils or set AR)")
        });
    assert!(status.success(), "`{ar} crs` failed to archive the kernel objects");
    println!("cargo:rustc-link-search=native={}", out_dir().display());
    println!("cargo:rustc-link-lib=static=pagedkv_kernels");
}

/// Fails the build when a kernel spills (PKV_ALLOW_SPILLS=1 turns it into a warning).
fn check_spills(kind: &str, offenders: Vec<String>) {
    if offenders.is_empty() {
        return;
    }
    let allow = env_input("PKV_ALLOW_SPILLS").is_some_and(|v| v == "1");
    for o in &offenders {
        println!("cargo:warning=pagedkv kernel spill ({kind}): {o}");
    }
    if !allow {
        panic!(
            "{} kernel(s) spill registers ({kind}); see the cargo warnings above (PKV_ALLOW_SPILLS=1 to build anyway)",
            offenders.len()
        );
    }
}

/// Compiles every kernel source with `compiler <flags> <source> -o <object>`, fails the build on
/// the spills that `spills` finds in a compiler log ("<kernel>: <what spilled>" each), and links
/// the objects into pagedkv. `kind` names the compiler's report in messages.
fn build_kernels(compiler: &Path, flags: &[String], kind: &str, spills: fn(&str) -> Vec<String>) {
    let objects = compile_all(&kernel_sources(), compiler, flags);
    let offenders = objects
        .iter()
        .flat_map(|(obj, log)| spills(log).into_iter().map(move |s| format!("{}: {s}", obj.display())))
        .collect();
    check_spills(kind, offenders);
    link_kernels(&objects);
}

// ------------------------------------------------------------------------------------------
// NVIDIA: nvcc compiles the HIP sources as CUDA through kernels/pkv_compat.h.
// ------------------------------------------------------------------------------------------

fn find_nvcc() -> PathBuf {
    let candidates: Vec<PathBuf> = [
        env_input("NVCC").map(PathBuf::from),
        env_input("CUDA_HOME").map(|h| Path::new(&h).join("bin").join("nvcc")),
        env_input("CUDA_PATH").map(|h| Path::new(&h).join("bin").join("nvcc")),
        Some(PathBuf::from("nvcc")),
    ]
    .into_iter()
    .flatten()
    .collect();
    println!("cargo:rerun-if-env-changed=PATH");
    candidates.into_iter().find(|c| runs(c)).unwrap_or_else(|| {
        panic!(
            "feature `cuda` needs nvcc, and none runs (tried NVCC, $CUDA_HOME/bin/nvcc, $CUDA_PATH/bin/nvcc, PATH). \
             Install the CUDA toolkit, or `pip install nvidia-cuda-nvcc nvidia-cuda-runtime nvidia-cuda-crt \
             nvidia-nvvm nvidia-cuda-cccl` and set NVCC=<site-packages>/nvidia/cu13/bin/nvcc; or build CPU-only \
             (no feature)"
        )
    })
}

/// The folder holding libcudart_static.a, next to nvcc (`../lib64`, `../lib`, or the
/// toolkit's `targets/<arch>/lib`); PyPI's nvcc lives in site-packages `nvidia/cu13/{bin,lib}`.
fn find_cudart_dir(nvcc: &Path) -> PathBuf {
    let resolved = if nvcc.components().count() == 1 {
        // Found on PATH: resolve it to know its folder.
        env::var_os("PATH")
            .and_then(|paths| env::split_paths(&paths).map(|p| p.join(nvcc)).find(|p| p.is_file()))
            .unwrap_or_else(|| nvcc.to_path_buf())
    } else {
        nvcc.to_path_buf()
    };
    let bin = resolved.canonicalize().unwrap_or(resolved).parent().map(Path::to_path_buf).unwrap_or_default();
    let root = bin.parent().map(Path::to_path_buf).unwrap_or_default();
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let candidates =
        [root.join("lib64"), root.join("lib"), root.join("targets").join(format!("{arch}-linux")).join("lib")];
    candidates.iter().find(|d| d.join("libcudart_static.a").is_file()).cloned().unwrap_or_else(|| {
        panic!(
            "feature `cuda` links the CUDA runtime statically, but libcudart_static.a is not next to {} (looked in {:?}); \
             install the CUDA runtime (`pip install nvidia-cuda-runtime` for PyPI's nvcc)",
            bin.display(),
            candidates
        )
    })
}

/// ptxas -v prints "N bytes stack frame, S bytes spill stores, L bytes spill loads" after
/// each "Compiling entry function '<name>'" line.
fn ptxas_spills(log: &str) -> Vec<String> {
    let mut spills = Vec::new();
    let mut entry = String::new();
    for line in log.lines() {
        if let Some(i) = line.find("Compiling entry function '") {
            entry = line[i + 26..].trim_end_matches(|c| c != '\'').trim_end_matches('\'').to_string();
        }
        if line.contains("bytes spill stores") && !line.contains(" 0 bytes spill stores, 0 bytes spill loads") {
            spills.push(format!("{entry}: {}", line.trim()));
        }
    }
    spills
}

fn build_cuda() {
    let nvcc = find_nvcc();
    let archs = split_list(&env_input("PKV_CUDA_ARCHS").unwrap_or_else(|| DEFAULT_CUDA_ARCHS.to_string()));
    let mut gencode = Vec::new();
    for arch in &archs {
        let num = arch.strip_prefix("sm_").unwrap_or_else(|| {
            panic!("PKV_CUDA_ARCHS entry `{arch}` is not of the form sm_<number> (e.g. sm_90, sm_90a)")
        });
        gencode.push(format!("-gencode=arch=compute_{num},code=sm_{num}"));
    }
    let mut flags =
        Vec::from(["-x", "cu", "-c", "-O3", "-std=c++17", "-Xcompiler", "-fPIC", "-Xptxas", "-v"].map(String::from));
    flags.extend(gencode);
    flags.extend(["-I", KERNEL_DIR].map(String::from));
    build_kernels(&nvcc, &flags, "ptxas", ptxas_spills);
    let cudart = find_cudart_dir(&nvcc);
    println!("cargo:rustc-link-search=native={}", cudart.display());
    println!("cargo:rustc-link-lib=static=cudart_static");
    // cudart_static is C++ (function-local statics, exceptions): it needs libstdc++.
    for lib in ["dl", "rt", "pthread", "stdc++"] {
        println!("cargo:rustc-link-lib=dylib={lib}");
    }
    println!("cargo:rustc-env=PKV_BUILT_GPU_TARGETS={}", archs.join(";"));
}

// ------------------------------------------------------------------------------------------
// AMD: hipcc (or clang through HIPCC) with every --offload-arch explicit.
// ------------------------------------------------------------------------------------------

/// The resource remarks name each kernel, then list "SGPRs Spill: n", "VGPRs Spill: n" and
/// "ScratchSize [bytes/lane]: n" (per target, in order).
fn amdgpu_spills(log: &str) -> Vec<String> {
    let mut spills = Vec::new();
    let mut entry = String::new();
    for line in log.lines() {
        if let Some(i) = line.find("Function Name: ") {
            entry = line[i + 15..].split_whitespace().next().unwrap_or("").to_string();
        }
        for key in ["SGPRs Spill: ", "VGPRs Spill: ", "ScratchSize [bytes/lane]: "] {
            if let Some(i) = line.find(key) {
                let n: u64 = line[i + key.len()..].split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0);
                if n != 0 {
                    spills.push(format!("{entry}: {key}{n}"));
                }
            }
        }
    }
    spills
}

fn build_rocm() {
    let hipcc = PathBuf::from(env_input("HIPCC").unwrap_or_else(|| "hipcc".to_string()));
    println!("cargo:rerun-if-env-changed=PATH");
    if !runs(&hipcc) {
        panic!(
            "feature `rocm` needs hipcc, and `{}` does not run. Install ROCm (or Debian's `hipcc libamdhip64-dev \
             rocm-device-libs`), or set HIPCC; or build CPU-only (no feature)",
            hipcc.display()
        );
    }
    let targets = ["PKV_GPU_TARGETS", "GPU_TARGETS", "AMDGPU_TARGETS"]
        .iter()
        .find_map(|v| env_input(v))
        .map(|s| split_list(&s))
        .unwrap_or_else(|| split_list(DEFAULT_AMD_TARGETS));
    for t in &targets {
        // hipcc without a valid --offload-arch silently builds for gfx803: refuse typos early.
        if !t.starts_with("gfx") {
            panic!("GPU target `{t}` is not an AMD gfx target (e.g. gfx90a, gfx942, gfx1100)");
        }
    }
    let extra = env_input("PKV_HIP_FLAGS").map(|f| split_list_ws(&f)).unwrap_or_default();
    for root in [env_input("ROCM_PATH"), env_input("HIP_PATH")].into_iter().flatten() {
        println!("cargo:rustc-link-search=native={}", Path::new(&root).join("lib").display());
    }
    let mut flags =
        Vec::from(["-x", "hip", "-c", "-O3", "-fPIC", "-Rpass-analysis=kernel-resource-usage"].map(String::from));
    flags.extend(targets.iter().map(|t| format!("--offload-arch={t}")));
    flags.extend(["-I", KERNEL_DIR].map(String::from));
    flags.extend(extra);
    build_kernels(&hipcc, &flags, "amdgpu", amdgpu_spills);
    println!("cargo:rustc-link-lib=dylib=amdhip64");
    println!("cargo:rustc-link-lib=dylib=stdc++");
    println!("cargo:rustc-env=PKV_BUILT_GPU_TARGETS={}", targets.join(";"));
}

/// Splits compiler flags on whitespace (PKV_HIP_FLAGS; no quoting needed for paths we use).
fn split_list_ws(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}
