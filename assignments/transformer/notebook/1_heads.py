# after: MultiHeadAttention
# Your attention, seen (course notebook 001, exercise 3): the weights of YOUR MultiHeadAttention on 6 random
# tokens with a causal mask, one heat-map per head. Not graded: change it as you like.
import matplotlib.pyplot as plt
import torch

try:
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 2)
    with torch.no_grad():
        _, weights = mha(torch.randn(1, 6, 16), torch.tril(torch.ones(6, 6, dtype=torch.bool)))
    fig, axes = plt.subplots(1, weights.shape[1], figsize=(8, 3.4))
    for head, ax in enumerate(axes):
        image = ax.imshow(weights[0, head].numpy(), cmap="viridis", vmin=0, vmax=1)
        ax.set(title=f"head {head}", xlabel="key", ylabel="query")
    fig.colorbar(image, ax=axes, label="attention weight")
    plt.show()
except NotImplementedError as error:
    print(f"No picture yet: {error}")
