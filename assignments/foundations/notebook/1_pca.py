# after: pca_2d
# The embeddings' PCA scatter (course notebooks 000 and 001), with YOUR process_sentences and pca_2d: every token
# of four "lead" sentences at the last layer. Offline, a tiny random DistilBERT (meaningless embeddings: it only
# shows that your code runs); set USE_REAL_MODEL = True on Colab to download distilbert-base-uncased (260 MB)
# and answer the questions below from it.
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

USE_REAL_MODEL = False
sentences = pd.DataFrame({"sentence": ["The lead singer left the band.", "She will lead the team to victory.",
                                       "Old pipes may contain lead.", "Lead is a heavy metal."],
                          "marker": ["guide", "guide", "metal", "metal"]})
try:
    if USE_REAL_MODEL:
        from transformers import AutoModel, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained("distilbert-base-uncased")
        encoder = AutoModel.from_pretrained("distilbert-base-uncased")
    else:
        from autograder.kit import tiny_hf

        tokenizer = tiny_hf.wordpiece_tokenizer(list(sentences["sentence"]))
        encoder = tiny_hf.tiny_distilbert(len(tokenizer))
    tokens, embeddings = process_sentences(sentences, encoder, tokenizer)
    xy = pca_2d(np.stack([e[-1].numpy() for e in embeddings]))
    lead = (tokens["token"] == "lead").to_numpy()
    plt.figure(figsize=(6, 5))
    plt.scatter(xy[~lead, 0], xy[~lead, 1], color="lightgrey")
    for marker, color in (("guide", "tab:blue"), ("metal", "tab:red")):
        chosen = lead & (tokens["marker"] == marker).to_numpy()
        plt.scatter(xy[chosen, 0], xy[chosen, 1], color=color, label=f'"lead" ({marker})')
    for (x, y), token in zip(xy, tokens["token"]):
        plt.annotate(token, (x, y), fontsize=7)
    plt.title("Token embeddings, last layer, projected with your pca_2d")
    plt.legend()
    plt.show()
except NotImplementedError as error:
    print(f"No picture yet: {error}")
