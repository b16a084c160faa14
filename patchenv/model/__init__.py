"""The model room: the ViT that really drops patches (`vit`), its FLOPs (`flops`), one
training update (`training`, which the env and the benchmarks' bare step share), the
CUDA-graph replay of that update (`cuda_graph`) and `Keep`, an action parsed once (`keep`).
Nothing here knows of Gymnasium, agents or runs."""
