package wav

import "math"

// Resample converts mono samples from one rate to another by band-limited
// interpolation: each output sample is the input, at the output sample's
// instant, convolved with a Hann-windowed sinc low-pass filter whose
// cutoff is 45 % of the lower rate (90 % of its Nyquist frequency: 3.6 kHz
// when the output is 8 kHz), 8 zero crossings on each side. The kernel is
// tabulated at 1/256 of an input sample. Outside the input the signal is
// 0. Rates below MinRate or above MaxRate, or equal, return the samples as
// they are.
func Resample(samples []int16, from, to int) []int16 {
	if from == to || from < MinRate || to < MinRate || from > MaxRate || to > MaxRate || len(samples) == 0 {
		return samples
	}
	const (
		zeros  = 8   // zero crossings each side
		phases = 256 // table steps per input sample
	)
	fc := 0.45 * float64(min(from, to)) / float64(from) // cycles per input sample
	half := float64(zeros) / (2 * fc)                   // kernel half-width, in input samples
	table := make([]float64, int(half*phases)+2)
	for i := range table {
		x := float64(i) / phases
		if x >= half {
			break
		}
		sinc := 1.0
		if x > 0 {
			sinc = math.Sin(2*math.Pi*fc*x) / (2 * math.Pi * fc * x)
		}
		table[i] = 2 * fc * sinc * 0.5 * (1 + math.Cos(math.Pi*x/half))
	}
	n := int(int64(len(samples)) * int64(to) / int64(from))
	out := make([]int16, n)
	for j := range out {
		t := float64(int64(j)*int64(from)) / float64(to) // the instant, in input samples
		lo, hi := max(int(math.Ceil(t-half)), 0), min(int(math.Floor(t+half)), len(samples)-1)
		sum := 0.0
		for k := lo; k <= hi; k++ {
			sum += float64(samples[k]) * table[int(math.Abs(t-float64(k))*phases+0.5)]
		}
		out[j] = int16(max(min(math.Round(sum), math.MaxInt16), math.MinInt16))
	}
	return out
}
