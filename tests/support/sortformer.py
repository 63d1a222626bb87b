"""A streaming Sortformer with random weights, built from NeMo's model config for
`diar_streaming_sortformer_4spk-v2` (its structure; sizes shrunk unless asked for in full).
Real weights cannot be had here: this pins the glue, not what the model hears."""

from __future__ import annotations


def sortformer_config(full_size: bool = False, normalize: str = "NA"):
    """NeMo's streaming Sortformer config. `normalize="NA"` makes a chunk's features the
    same as the whole recording's, so streamed predictions can be compared exactly."""
    from omegaconf import OmegaConf

    fc, tf = (512, 192) if full_size else (64, 32)
    return OmegaConf.create(
        {
            "sample_rate": 16000,
            "pil_weight": 0.5,
            "ats_weight": 0.5,
            "max_num_of_spks": 4,
            "streaming_mode": True,
            "model_defaults": {"fc_d_model": fc, "tf_d_model": tf},
            "preprocessor": {
                "_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
                "normalize": normalize,
                "window_size": 0.025,
                "sample_rate": 16000,
                "window_stride": 0.01,
                "window": "hann",
                "features": 128,
                "n_fft": 512,
                "frame_splicing": 1,
                "dither": 0.00001,
            },
            "sortformer_modules": {
                "_target_": "nemo.collections.asr.modules.sortformer_modules.SortformerModules",
                "num_spks": 4,
                "dropout_rate": 0.5,
                "fc_d_model": fc,
                "tf_d_model": tf,
                "spkcache_len": 188,
                "fifo_len": 0,
                "chunk_len": 188,
                "spkcache_update_period": 1,
                "chunk_left_context": 1,
                "chunk_right_context": 1,
                "spkcache_sil_frames_per_spk": 3,
            },
            "encoder": {
                "_target_": "nemo.collections.asr.modules.ConformerEncoder",
                "feat_in": 128,
                "feat_out": -1,
                "n_layers": 17 if full_size else 2,
                "d_model": fc,
                "subsampling": "dw_striding",
                "subsampling_factor": 8,
                "subsampling_conv_channels": 256 if full_size else 32,
                "causal_downsampling": False,
                "ff_expansion_factor": 4,
                "self_attention_model": "rel_pos",
                "n_heads": 8 if full_size else 4,
                "att_context_size": [-1, -1],
                "att_context_style": "regular",
                "xscaling": True,
                "untie_biases": True,
                "pos_emb_max_len": 5000,
                "conv_kernel_size": 9,
                "conv_norm_type": "batch_norm",
                "dropout": 0.1,
                "dropout_pre_encoder": 0.1,
                "dropout_emb": 0.0,
                "dropout_att": 0.1,
            },
            "transformer_encoder": {
                "_target_": "nemo.collections.asr.modules.transformer.transformer_encoders.TransformerEncoder",
                "num_layers": 18 if full_size else 2,
                "hidden_size": tf,
                "inner_size": 768 if full_size else 64,
                "num_attention_heads": 8 if full_size else 4,
                "attn_score_dropout": 0.5,
                "attn_layer_dropout": 0.5,
                "ffn_dropout": 0.5,
                "hidden_act": "relu",
                "pre_ln": False,
                "pre_ln_final_layer_norm": True,
            },
            "loss": {"_target_": "nemo.collections.asr.losses.bce_loss.BCELoss", "weight": None, "reduction": "mean"},
        }
    )


def random_sortformer(full_size: bool = False, normalize: str = "NA", seed: int = 0):
    import logging

    import torch
    from nemo.collections.asr.models import SortformerEncLabelModel

    logging.getLogger("nemo_logger").setLevel(logging.ERROR)
    torch.manual_seed(seed)
    return SortformerEncLabelModel(cfg=sortformer_config(full_size, normalize)).eval()
