"""Coefficients of ITU-T P.1203.1 (mode 0, H.264) and P.1203.3, with where each comes from.

Equation numbers are those of the 10/2017 editions. The Recommendations' own text was not
readable from this environment (only their cover pages are stored), so every value below was
taken from independent public transcriptions that quote the Recommendations' equation and
table numbers, and kept only where at least two of them agree:

* T1 = vitaliipoliakov/itu-p1203-matlab (MIT), ``p1203_1_PV.m``, ``mos_from_r.m``,
  ``r_from_mos.m``, ``p1203_3_int.m``: P.1203.1 eqs. (1)-(13), A.1-A.2, E.1-E.5 and
  P.1203.3 eqs. (1)-(31) of the 10/2017 editions.
* T2 = Z. Duanmu's SQoE P.1203 port (MATLAB and Python, ``P12033``/``p12033``) and the
  pysqoe ``P1203`` model: P.1203.1 8.1.1-8.1.3 and P.1203.3 eqs. 8-2 ... 8-14 of the 12/2016
  edition.

No code or data of the ITU's reference software (github.com/itu-p1203/itu-p1203, research-only
licence) was used. Only H.264 is covered: P.1203.1 (10/2017) mode 0 has no H.265/VP9 table,
and the later codec extension (Ramachandra Rao et al., IS&T EI 2019) is not a Recommendation
and its coefficients were not available from an allowed source.
"""

from __future__ import annotations

import math

# -- P.1203.1 Annex A, Table A.1: mode 0 quantisation parameter, H.264 (T1, T2) ---------------
A1, A2, A3, A4 = 11.99835, -2.99992, 41.24751, 0.13183
# -- P.1203.1 8.1.1 eq. (2): MOS of the coding degradation (T1, T2) -----------------------------
Q1, Q2, Q3 = 4.66, -0.07, 4.06
# -- P.1203.1 8.1.2 eq. (3): upscaling degradation (T1, T2) --------------------------------------
U1, U2 = 72.61, 0.32
# -- P.1203.1 8.1.3 eqs. (5)-(8): frame-rate degradation, applies below 24 fps (T1, T2) ---------
T1, T2, T3 = 30.98, 1.29, 64.65
FPS_THRESHOLD = 24.0
# -- P.1203.1 eq. (13): handheld (mobile) device mapping of the video MOS (T1, T2) --------------
HTV1, HTV2, HTV3, HTV4 = -0.60293, 2.12382, -0.36936, 0.03409
# -- P.1203.1 Annex E, eqs. E.1-E.2: MOSfromR (T1, and T2's MATLAB) -----------------------------
MOS_MIN, MOS_MAX = 1.05, 4.9
MOS_FROM_R_CUBIC = 7e-6

# -- P.1203.3 8.1.1 eqs. (1)-(3): weight of a stall by its distance to the end (T1, T2) --------
C_REF7, C_REF8 = 0.48412879, 10.0
# -- P.1203.3 8.1.2.1 eqs. (4)-(7): negative bias (T1, T2) ---------------------------------------
NB_C1, NB_C2, NB_C23 = 1.87403625, 7.85416481, 0.01853820
# -- P.1203.3 8.2 eq. (17): per-second audiovisual quality O.34 (T1, T2) -------------------------
AV1, AV2, AV3, AV4 = -0.00069084, 0.15374283, 0.97153861, 0.02461776
# -- P.1203.3 8.3 eqs. (19)-(21): temporal weights of the O.35 baseline (T1, T2) ----------------
W_T1 = 0.00666620027943848
W_T2 = 0.0000404018840273729
W_T3 = 0.156497800436237
W_T4 = 0.143179744942738
W_T5 = 0.0238641564518876
# -- P.1203.3 8.3 eqs. (22)-(27): oscillation and adaptation compensation (T1, T2) -------------
COMP1, COMP2, COMP3, COMP4 = 0.67756080, -8.05533303, 0.17332553, -0.01035647
OSC_COMP_MAX, ADAPT_COMP_MAX = 1.5, 0.5
QC_MA_ORDER, QC_STEP, QC_THRESHOLD = 5, 3, 0.2
# -- P.1203.3 8.4 eqs. (28)-(30): stalling impact and the final O.46 (T1, T2) -------------------
S1, S2, S3 = 9.35158684, 0.91890815, 11.0567558
PARAMETRIC_WEIGHT, RF_WEIGHT = 0.75, 0.25
O46_OFFSET, O46_SCALE = 0.02833052, 0.98117059

# -- Assumption, not a P.1203 coefficient: the per-second audio quality O.21 -------------------
# The input carries no audio, so the audio is taken as transparent (top of the ACR scale).
ASSUMED_AUDIO_MOS_O21 = 5.0
# O.34 = clip(AV_ALPHA + AV_BETA * O.22, 1, 5) once O.21 is fixed (eq. 17 with O.21 = 5).
AV_ALPHA = AV1 + AV2 * ASSUMED_AUDIO_MOS_O21
AV_BETA = AV3 + AV4 * ASSUMED_AUDIO_MOS_O21

# -- Derived: exact inverse of MOSfromR (E.1) on [MOS_MIN, MOS_MAX] ------------------------------
# E.1 is the cubic MOS = k3 R^3 + k2 R^2 + k1 R + k0. Its three roots are real over the whole
# MOS range (casus irreducibilis), so the root in [R_AT_MOS_MIN, 100] is the trigonometric one:
# R = R_SHIFT + R_AMP * cos(acos(R_ARG0 + R_ARG1 * MOS) / 3 - 2 pi / 3).
_K3 = -MOS_FROM_R_CUBIC
_K2 = 160.0 * MOS_FROM_R_CUBIC
_K1 = (MOS_MAX - MOS_MIN) / 100.0 - 6000.0 * MOS_FROM_R_CUBIC
_K0 = MOS_MIN
_A, _B = _K2 / _K3, _K1 / _K3                       # monic cubic R^3 + a R^2 + b R + c
_P = _B - _A * _A / 3.0                             # depressed cubic x^3 + p x + q, R = x - a/3
_Q0 = 2.0 * _A ** 3 / 27.0 - _A * _B / 3.0 + _K0 / _K3
_ACOS_SCALE = 3.0 / (2.0 * _P) * math.sqrt(-3.0 / _P)
R_ARG0 = _ACOS_SCALE * _Q0
R_ARG1 = -_ACOS_SCALE / _K3
R_SHIFT = -_A / 3.0
R_AMP = 2.0 * math.sqrt(-_P / 3.0)
R_PHASE = 2.0 * math.pi / 3.0

LN2 = math.log(2.0)
LN10 = math.log(10.0)
ASPECT_16_9 = 16.0 / 9.0
