# after: attach_attention_hook
# Spy on the buggy classifier with YOUR hook (course notebook 003, Part B): the attention weights of the first
# head for the first review of a batch, before any training; the last three tokens are padding (id 0).
import matplotlib.pyplot as plt
import torch

try:
    torch.manual_seed(0)
    classifier = BuggyClassifier(vocab_size=50, embed_dim=16, num_heads=2, ffn_dim=32)
    captured = []
    handle = attach_attention_hook(classifier.encoder, captured)
    ids = torch.randint(1, 50, (4, 12))
    ids[:, 9:] = 0
    with torch.no_grad():
        classifier(ids)
    handle.remove()
    plt.figure(figsize=(4.8, 4))
    plt.imshow(captured[0][0, 0].numpy(), cmap="viridis")
    plt.title("Attention weights (first review, first head)")
    plt.xlabel("key (token position)")
    plt.ylabel("query (token position)")
    plt.colorbar(label="attention weight")
    plt.show()
except NotImplementedError as error:
    print(f"No picture yet: {error}")
