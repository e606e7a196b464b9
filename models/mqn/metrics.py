"""HDR quality metrics for the model card (NumPy only): PU21-PSNR, PQ-SSIM, ΔE_ITP, mid-tone ratio.

All take linear BT.2020 display light in cd/m² (H x W x 3) and clip both sides at the mastering peak first,
so no method is rewarded or punished for light the display cannot show.

References
----------
Mantiuk & Azimi, "PU21: A novel perceptually uniform encoding for adapting existing quality metrics for HDR",
PCS 2021 (banding + glare parameters). ITU-R BT.2124-0 (ΔE_ITP), ITU-R BT.2100-2 table 6/7 (ICtCp).
Wang et al., "Image quality assessment: from error visibility to structural similarity", TIP 2004 (SSIM).
"""

import numpy as np
import numpy.typing as npt

from service.colour.pq import eotf_inverse_st2084

F = npt.NDArray[np.floating]

PU21_PARAMS = (
    0.353487901,
    0.3734658629,
    8.277049286e-05,
    0.9062562627,
    0.09150303166,
    0.9099517204,
    596.3148142,
)
"""PU21 "banding_glare" fit (Mantiuk & Azimi 2021, table 1)."""
PU21_RANGE = (0.005, 10000.0)
MATRIX_BT2020_TO_LMS = np.array([[1688, 2146, 262], [683, 2951, 462], [99, 309, 3688]]) / 4096
"""ITU-R BT.2100-2 table 6 (ICtCp LMS)."""
MATRIX_LMS_TO_ICTCP = np.array([[2048, 2048, 0], [6610, -13613, 7003], [17933, -17390, -543]]) / 4096
"""ITU-R BT.2100-2 table 7 (from PQ-coded L'M'S')."""


def pu21_encode(nits: npt.ArrayLike) -> F:
    """PU21 code value of absolute luminance (cd/m², clipped to [0.005, 10000])."""
    p = PU21_PARAMS
    y = np.clip(np.asarray(nits, np.float64), *PU21_RANGE)
    yp = y ** p[3]
    return p[6] * (((p[0] + p[1] * yp) / (1.0 + p[2] * yp)) ** p[4] - p[5])


PU21_PEAK = float(pu21_encode(10000.0))
"""PSNR peak: the PU21 code of 10,000 cd/m² (so dB values are comparable with other PU21 tables)."""


def pu21_mse(test: F, ref: F, peak_nits: float = 1000.0, mask: npt.NDArray[np.bool_] | None = None) -> float:
    """Mean squared PU21 difference of the RGB channels (both clipped at ``peak_nits``), optionally masked."""
    a = pu21_encode(np.clip(test, 0.0, peak_nits))
    b = pu21_encode(np.clip(ref, 0.0, peak_nits))
    d2 = (a - b) ** 2
    return float(d2[mask].mean() if mask is not None else d2.mean())


def psnr_of_pu21_mse(mse: float) -> float:
    """PSNR in dB of a PU21 mean squared error (floored at 1e-12: an exact match reads 120 dB or more)."""
    return float(10.0 * np.log10(PU21_PEAK**2 / max(mse, 1e-12)))


def pu21_psnr(test: F, ref: F, peak_nits: float = 1000.0, mask: npt.NDArray[np.bool_] | None = None) -> float:
    """PSNR between PU21-encoded RGB channels (both clipped at ``peak_nits``), optionally on a pixel mask."""
    return psnr_of_pu21_mse(pu21_mse(test, ref, peak_nits, mask))


def _gauss_filter(x: F, sigma: float = 1.5, radius: int = 5) -> F:
    """Separable Gaussian over axes 0 and 1 ('valid' borders, as the reference SSIM)."""
    t = np.arange(-radius, radius + 1)
    k = np.exp(-(t**2) / (2 * sigma**2))
    k /= k.sum()
    h, w = x.shape[:2]
    y = sum(k[i] * x[i : h - 2 * radius + i] for i in range(2 * radius + 1))
    return sum(k[i] * y[:, i : w - 2 * radius + i] for i in range(2 * radius + 1))


def pq_ssim(test: F, ref: F, peak_nits: float = 1000.0) -> float:
    """Mean SSIM of PQ-coded RGB (data range 1.0, 11x11 Gaussian σ=1.5), averaged over channels."""
    a = np.asarray(eotf_inverse_st2084(np.clip(test, 0.0, peak_nits)), np.float64)
    b = np.asarray(eotf_inverse_st2084(np.clip(ref, 0.0, peak_nits)), np.float64)
    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = _gauss_filter(a), _gauss_filter(b)
    saa = _gauss_filter(a * a) - mu_a**2
    sbb = _gauss_filter(b * b) - mu_b**2
    sab = _gauss_filter(a * b) - mu_a * mu_b
    ssim = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2))
    return float(ssim.mean())


def ictcp(nits_bt2020: F) -> F:
    """ICtCp (BT.2100 PQ) of linear BT.2020 cd/m²; last axis I, Ct, Cp."""
    lms = np.asarray(nits_bt2020, np.float64) @ MATRIX_BT2020_TO_LMS.T
    return np.asarray(eotf_inverse_st2084(lms), np.float64) @ MATRIX_LMS_TO_ICTCP.T


def delta_e_itp(test: F, ref: F, peak_nits: float = 1000.0) -> float:
    """Mean ΔE_ITP (ITU-R BT.2124 clause 2: 720 * sqrt(ΔI² + (ΔCt/2)² + ΔCp²)); 1.0 ≈ one JND."""
    a = ictcp(np.clip(test, 0.0, peak_nits))
    b = ictcp(np.clip(ref, 0.0, peak_nits))
    d = a - b
    return float(np.mean(720.0 * np.sqrt(d[..., 0] ** 2 + (0.5 * d[..., 1]) ** 2 + d[..., 2] ** 2)))
