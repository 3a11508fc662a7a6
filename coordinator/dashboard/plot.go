package dashboard

import (
	"fmt"
	"image/color"
	"io"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// PlotOptions are the extras of a plot of a task's curves.
type PlotOptions struct {
	// Title is drawn above the curves.
	Title string
	// Target, when positive, draws a dashed line at this accuracy.
	Target float64
	// Width and Height of the image (default 8 × 7 inches at 96 dpi).
	Width, Height vg.Length
}

// PlotCurves draws a task's accuracy (above) and loss (below: test loss and the agents'
// training loss) per round, as a PNG image, from its versions' metrics. Versions without
// a metric are left out of that curve; the initial model (round 0) is left out.
func PlotCurves(w io.Writer, versions []VersionPoint, opt PlotOptions) error {
	if opt.Width == 0 {
		opt.Width = 8 * vg.Inch
	}
	if opt.Height == 0 {
		opt.Height = 7 * vg.Inch
	}
	series := func(key string) plotter.XYs {
		var pts plotter.XYs
		for _, v := range versions {
			if y, ok := v.Metrics[key]; ok && v.Round > 0 {
				pts = append(pts, plotter.XY{X: float64(v.Round), Y: y})
			}
		}
		return pts
	}
	acc, test, train := series("accuracy"), series("test_loss"), series("train_loss")
	if len(acc)+len(test)+len(train) == 0 {
		return fmt.Errorf("plot: no version has accuracy or loss metrics yet")
	}
	top := plot.New()
	top.Title.Text = opt.Title
	top.X.Label.Text = "round"
	top.Y.Label.Text = "test accuracy"
	top.Add(plotter.NewGrid())
	if err := addLine(top, acc, color.RGBA{R: 37, G: 99, B: 235, A: 255}, "accuracy"); err != nil {
		return err
	}
	if opt.Target > 0 && len(acc) > 0 {
		target, err := plotter.NewLine(plotter.XYs{{X: acc[0].X, Y: opt.Target}, {X: acc[len(acc)-1].X, Y: opt.Target}})
		if err != nil {
			return fmt.Errorf("plot: %w", err)
		}
		target.Dashes = []vg.Length{vg.Points(4), vg.Points(4)}
		top.Add(target)
		top.Legend.Add(fmt.Sprintf("target %g", opt.Target), target)
	}
	top.Legend.Top, top.Legend.Left = false, false
	bottom := plot.New()
	bottom.X.Label.Text = "round"
	bottom.Y.Label.Text = "loss"
	bottom.Add(plotter.NewGrid())
	bottom.Legend.Top = true
	if err := addLine(bottom, test, color.RGBA{R: 37, G: 99, B: 235, A: 255}, "test loss"); err != nil {
		return err
	}
	if err := addLine(bottom, train, color.RGBA{R: 245, G: 158, B: 11, A: 255}, "training loss (agents)"); err != nil {
		return err
	}
	img := vgimg.NewWith(vgimg.UseWH(opt.Width, opt.Height), vgimg.UseDPI(96))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: vg.Points(4), PadBottom: vg.Points(4), PadLeft: vg.Points(4), PadRight: vg.Points(8), PadY: vg.Points(12)}
	plots := [][]*plot.Plot{{top}, {bottom}}
	canvases := plot.Align(plots, tiles, dc)
	top.Draw(canvases[0][0])
	bottom.Draw(canvases[1][0])
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(w); err != nil {
		return fmt.Errorf("plot: write PNG: %w", err)
	}
	return nil
}

// addLine adds a curve with points, unless it has none.
func addLine(p *plot.Plot, pts plotter.XYs, c color.Color, name string) error {
	if len(pts) == 0 {
		return nil
	}
	l, s, err := plotter.NewLinePoints(pts)
	if err != nil {
		return fmt.Errorf("plot %s: %w", name, err)
	}
	l.Color, s.Color = c, c
	s.Radius = vg.Points(1.5)
	if len(pts) > 100 {
		s.Radius = 0
	}
	p.Add(l, s)
	p.Legend.Add(name, l)
	return nil
}

// PlotFile writes PlotCurves's image to a file.
func PlotFile(path string, versions []VersionPoint, opt PlotOptions) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	if err := PlotCurves(f, versions, opt); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	return nil
}
