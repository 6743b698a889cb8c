"""CPU bf16 inference paths (where bf16 is native): oneDNN linears, gemm attention, C++ kernels, lean VAE decode."""
